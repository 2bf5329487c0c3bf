//! TensorFlow's "SAME" padding, as timm's `pad_same` and flax's `padding="SAME"` compute it.

/// `(before, after)` padding of one axis of length `size` for a window `kernel` moved by
/// `stride`, so that the output has `ceil(size / stride)` positions. An odd total puts the
/// extra row or column after (TF's rule; PyTorch's symmetric padding cannot express it).
pub fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out.max(1) - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// The output length of a "SAME"-padded window over `size` with `stride`.
pub fn same_output(size: usize, stride: usize) -> usize {
    size.div_ceil(stride)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asymmetric_where_the_stride_needs_it() {
        // 7x7/2 over 224: 5 rows of padding, 2 before and 3 after (timm: pad_same).
        assert_eq!(same_padding(224, 7, 2), (2, 3));
        // 3x3/2 over 112 and 56: one row, after.
        assert_eq!(same_padding(112, 3, 2), (0, 1));
        assert_eq!(same_padding(56, 3, 2), (0, 1));
        // Odd sizes: symmetric.
        assert_eq!(same_padding(57, 3, 2), (1, 1));
        // 3x3/1: the symmetric 1.
        assert_eq!(same_padding(28, 3, 1), (1, 1));
        // 1x1/2: none.
        assert_eq!(same_padding(56, 1, 2), (0, 0));
        assert_eq!(same_output(57, 2), 29);
    }
}

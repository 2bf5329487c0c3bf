"""TensorBoard's own writer and reader, for vit-train's event files (crates/vit-train/src/tensorboard.rs).

`write`: an event file written by tensorboard's `EventFileWriter` (file version, scalars at
several steps and values, zero and negative included, a session-start event as a resumed run
writes it); the file's bytes and the events in it go to --out as JSON, so that the Rust test
encodes the same events and compares bytes.

`read RUN`: the scalars of a run folder's event files as TensorBoard's `EventAccumulator` loads
them (orphaned data purged after a session start, as TensorBoard does), as JSON on stdout:
{tag: [[step, value], ...]}.
"""
import argparse
import glob
import json
import os
import struct
import sys
import tempfile


def write(out):
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    events = []
    with tempfile.TemporaryDirectory() as d:
        w = EventFileWriter(d)
        scalars = [
            ("train/loss", 2.302585, 1),
            ("train/lr", 3e-4, 1),
            ("train/grad_norm", 0.0, 2),
            ("val/top1", 0.8125, 150),
            ("train/loss", -1.5, 300000),
            ("train/img_per_s", 1234.5, 2**40),
        ]
        for i, (tag, value, step) in enumerate(scalars):
            wall = 1764000000.25 + i
            ev = event_pb2.Event(
                wall_time=wall,
                step=step,
                summary=summary_pb2.Summary(
                    value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]
                ),
            )
            w.add_event(ev)
            events.append({"kind": "scalar", "wall_time": wall, "step": step, "tag": tag,
                           "value": value})
        start = event_pb2.Event(
            wall_time=1764000100.5,
            step=20,
            session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START),
        )
        w.add_event(start)
        events.append({"kind": "session_start", "wall_time": 1764000100.5, "step": 20})
        w.close()
        (path,) = glob.glob(os.path.join(d, "events.out.tfevents.*"))
        data = open(path, "rb").read()
    # The first event, the file version, carries the writer's clock: read it back.
    from tensorboard.backend.event_processing import event_file_loader

    with tempfile.NamedTemporaryFile(suffix=".tfevents") as f:
        f.write(data)
        f.flush()
        first = next(iter(event_file_loader.EventFileLoader(f.name).Load()))
    assert first.file_version == "brain.Event:2"
    events.insert(0, {"kind": "file_version", "wall_time": first.wall_time,
                      "writer": first.source_metadata.writer})
    # Doubles also as their bits: a JSON parser need not round-trip them exactly.
    for e in events:
        e["wall_time_bits"] = struct.pack("<d", e["wall_time"]).hex()
    json.dump({"events": events, "file_hex": data.hex()}, open(out, "w"), indent=1)
    print(f"{len(events)} events, {len(data)} bytes -> {out}")


def read(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run, size_guidance={"scalars": 0}, purge_orphaned_data=True)
    acc.Reload()
    out = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--out", required=True)
    r = sub.add_parser("read")
    r.add_argument("run")
    a = ap.parse_args()
    write(a.out) if a.cmd == "write" else read(a.run)

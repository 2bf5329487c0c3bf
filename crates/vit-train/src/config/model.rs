//! `[model]`: a preset laid under the user's keys and deserialised straight into the
//! family's config ([`VitConfig`] for ViTs and hybrids, [`BitConfig`] for BiT ResNets), the
//! one place a model hyper-parameter is declared and documented.
//!
//! ```toml
//! [model]
//! preset = "vit_tiny_patch16_224"   # optional: VitConfig's defaults without it
//! image_size = [32, 32]             # any field of the family's config replaces the preset's
//! num_classes = 10
//! ```
//!
//! A ResNet preset (`resnetv2_50x1_bit`, `bit_tiny`) selects [`BitConfig`]; without a preset,
//! `family = "resnet"` does. A run records its architecture the same way: the preset's name,
//! `family = "resnet"` for a ResNet, and every field.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::{Table as Map, Value};
use vit_model::resnet::{BitConfig, ResNetConfig};
use vit_model::{Family, ModelConfig, VitConfig};

/// The architecture: the preset it started from (for readers) and the full config.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSection {
    /// The preset name (`vit_base_patch16_224`, ...), when the recipe named one.
    pub preset: Option<String>,
    /// The architecture, every field resolved.
    pub config: ModelConfig,
}

/// The `family` key's values. A hybrid is a ViT with a `[model.backbone]`.
const FAMILIES: &str = "`vit`, `hybrid` or `resnet`";

impl ModelSection {
    /// The section of a config built in code (no preset).
    pub fn new(config: impl Into<ModelConfig>) -> Self {
        Self {
            preset: None,
            config: config.into(),
        }
    }

    /// Lays `user`'s keys over the preset it names (or over [`VitConfig::new`]). Nested
    /// tables (`[model.backbone]`) are laid over the preset's, or over their own defaults.
    /// Unknown keys and values of the wrong type are errors naming `model.<key>`.
    pub fn from_table(mut user: Map) -> Result<Self, String> {
        let preset = match user.remove("preset") {
            None => None,
            Some(Value::String(name)) => Some(name),
            Some(other) => {
                return Err(format!(
                    "key `model.preset`: expected a preset name, got {other}"
                ));
            }
        };
        let family = match user.remove("family") {
            None => None,
            Some(Value::String(f)) if ["vit", "hybrid", "resnet"].contains(&f.as_str()) => Some(f),
            Some(other) => {
                return Err(format!(
                    "key `model.family`: expected {FAMILIES}, got {other}"
                ));
            }
        };
        let base = match &preset {
            Some(name) => {
                ModelConfig::preset(name).map_err(|e| format!("key `model.preset`: {e}"))?
            }
            None if family.as_deref() == Some("resnet") => ModelConfig::Bit(BitConfig::new()),
            None => ModelConfig::Vit(VitConfig::new()),
        };
        let config = match base {
            ModelConfig::Vit(base) => ModelConfig::Vit(resolve(&base, user)?),
            ModelConfig::Bit(base) => ModelConfig::Bit(resolve(&base, user)?),
        };
        if let Some(f) = &family {
            let actual = match config.family() {
                Family::ResNet => "resnet",
                Family::Hybrid => "hybrid",
                Family::Vit => "vit",
            };
            if f != actual {
                let why = match (f.as_str(), &preset) {
                    (_, Some(p)) => format!("preset `{p}` is a {actual}"),
                    ("hybrid", None) => "a hybrid needs a [model.backbone] table".into(),
                    _ => format!("the keys describe a {actual}"),
                };
                return Err(format!("key `model.family`: \"{f}\", but {why}"));
            }
        }
        Ok(Self { preset, config })
    }
}

/// `user`'s keys laid over `base`, deserialised into `T` (errors name `model.<key>`).
fn resolve<T: Serialize + DeserializeOwned>(base: &T, user: Map) -> Result<T, String> {
    let mut table = to_object(base);
    overlay::<T>(&mut table, user, "model")?;
    serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        format!("key `model.{path}`: {}", e.into_inner())
    })
}

/// Sets `user`'s keys in `base` (`T`'s fields, serialised), refusing keys `T` does not have.
fn overlay<T: DeserializeOwned>(base: &mut Map, user: Map, path: &str) -> Result<(), String> {
    let fields = struct_fields::<T>();
    for (key, value) in user {
        if !fields.contains(&key.as_str()) {
            return Err(format!(
                "key `{path}.{key}`: unknown field `{key}`, expected one of {}",
                fields
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let value = match (key.as_str(), value) {
            // A backbone table completes the preset's backbone, or the defaults.
            ("backbone", Value::Table(sub)) => {
                let mut inner = match base.remove("backbone") {
                    Some(Value::Table(b)) => b,
                    _ => to_object(&ResNetConfig::new()),
                };
                overlay::<ResNetConfig>(&mut inner, sub, &format!("{path}.backbone"))?;
                Value::Table(inner)
            }
            (_, value) => value,
        };
        base.insert(key, value);
    }
    Ok(())
}

/// A config struct as a TOML table (unset options left out).
fn to_object<T: Serialize>(value: &T) -> Map {
    Map::try_from(value).expect("a config struct serialises to a table")
}

impl Serialize for ModelSection {
    /// `preset` (when there is one), `family = "resnet"` for a ResNet, then every field in
    /// the config's order; unset options are left out (TOML has no null).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Flat<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            preset: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            family: Option<&'static str>,
            #[serde(flatten)]
            config: Map,
        }
        let (family, config) = match &self.config {
            ModelConfig::Vit(c) => (None, Map::try_from(c)),
            ModelConfig::Bit(c) => (Some("resnet"), Map::try_from(c)),
        };
        let config = config.map_err(serde::ser::Error::custom)?;
        Flat {
            preset: &self.preset,
            family,
            config,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ModelSection {
    /// From TOML (a recipe) or JSON (a checkpoint's `state.json`, where an unset option of an
    /// older record is `null`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, Option<Value>>::deserialize(deserializer)?;
        let user = raw.into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
        Self::from_table(user).map_err(de::Error::custom)
    }
}

/// The field names of a struct, as its `Deserialize` implementation declares them.
fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

/// A deserializer that records the field list a struct asks for, then stops.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

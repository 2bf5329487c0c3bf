//! `[model]`: a preset laid under the user's keys and deserialised straight into
//! [`VitConfig`], the one place a model hyper-parameter is declared and documented.
//!
//! ```toml
//! [model]
//! preset = "vit_tiny_patch16_224"   # optional: VitConfig's defaults without it
//! image_size = [32, 32]             # any VitConfig field replaces the preset's value
//! num_classes = 10
//! ```
//!
//! A run records its architecture the same way: the preset's name and every field.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::{Table as Map, Value};
use vit_model::VitConfig;
use vit_model::resnet::ResNetConfig;

/// The architecture: the preset it started from (for readers) and the full config.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSection {
    /// The preset name (`vit_base_patch16_224`, ...), when the recipe named one.
    pub preset: Option<String>,
    /// The architecture, every field resolved.
    pub config: VitConfig,
}

impl ModelSection {
    /// The section of a config built in code (no preset).
    pub fn new(config: VitConfig) -> Self {
        Self {
            preset: None,
            config,
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
        let base = match &preset {
            Some(name) => {
                VitConfig::preset(name).map_err(|e| format!("key `model.preset`: {e}"))?
            }
            None => VitConfig::new(),
        };
        let mut table = to_object(&base);
        overlay::<VitConfig>(&mut table, user, "model")?;
        let config = serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            format!("key `model.{path}`: {}", e.into_inner())
        })?;
        Ok(Self { preset, config })
    }
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
    /// `preset` (when there is one), then every field in [`VitConfig`]'s order; unset
    /// options are left out (TOML has no null).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Flat<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            preset: &'a Option<String>,
            #[serde(flatten)]
            config: Map,
        }
        let config = Map::try_from(&self.config).map_err(serde::ser::Error::custom)?;
        Flat {
            preset: &self.preset,
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

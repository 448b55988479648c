//! Closed sets of values stored as strings (states, kinds, directions): one Rust enum each, with
//! one string per variant written once, in [`string_enum!`]. The same string is what the
//! database column holds (sea-orm `DeriveValueType`), what events and the API carry (serde), and
//! what `as_str`/`parse` give, so the three can never disagree.

/// Defines a string-backed enum: `as_str`, `parse`, `ALL`, `Display`, `FromStr`, serde, and a
/// sea-orm column type.
///
/// ```text
/// string_enum! {
///     /// Where an encounter stands.
///     pub enum EncounterStatus { Open = "open", Closed = "closed" }
/// }
/// ```
#[macro_export]
macro_rules! string_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, sea_orm::DeriveValueType)]
        #[sea_orm(value_type = "String")]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$($s),+].len()] = [$($name::$variant),+];

            /// The stored string.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $s),+
                }
            }

            /// The value a stored string names, if any.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($s => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = sea_orm::sea_query::ValueTypeErr;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s).ok_or(sea_orm::sea_query::ValueTypeErr)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
                Self::parse(&s).ok_or_else(|| {
                    serde::de::Error::unknown_variant(&s, &[$($s),+])
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::string_enum! {
        /// A test set.
        pub enum Colour { Red = "red", DarkBlue = "dark_blue" }
    }

    #[test]
    fn one_string_per_value_everywhere() {
        for c in Colour::ALL {
            assert_eq!(Colour::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::json!(c.as_str()));
            assert_eq!(serde_json::from_value::<Colour>(serde_json::json!(c.as_str())).unwrap(), c);
            assert_eq!(sea_orm::Value::from(c), sea_orm::Value::from(c.as_str()));
        }
        assert!(serde_json::from_value::<Colour>(serde_json::json!("green")).is_err());
        assert_eq!(Colour::DarkBlue.to_string(), "dark_blue");
    }
}

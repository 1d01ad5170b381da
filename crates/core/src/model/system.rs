//! The installation record and named system settings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::record;
use crate::{Error, Id, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Installation {
    pub id: Id,
    pub created_at: DateTime<Utc>,
    /// The Gatehouse version that created the store.
    pub created_by_version: String,
}

record!(Installation, "installation");

/// A named system setting holding any JSON value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    pub name: String,
    pub value: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

record!(Setting, "setting");

/// A valid setting name: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingName(String);

impl SettingName {
    pub fn parse(name: &str) -> Result<Self> {
        let valid = (1..=64).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if !valid {
            return Err(Error::invalid_input(
                "setting names are 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter",
            ));
        }
        Ok(SettingName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

//! Edits of containers/storage's `storage.conf` and lazyfsd's config that
//! turn the additional layer store on, keeping everything else as it was,
//! comments and order included.

use std::path::Path;

use toml_edit::{Array, DocumentMut, Item, Table};

/// Why a file cannot be edited.
#[derive(Debug, thiserror::Error)]
pub enum ConfEditError {
    /// Not TOML.
    #[error("{file} is not valid TOML: {message}")]
    Parse {
        /// Which file.
        file: &'static str,
        /// The parser's message (line and column).
        message: String,
    },
    /// A key holds a value of the wrong type.
    #[error("{file}: `{key}` is not {expected}")]
    Type {
        /// Which file.
        file: &'static str,
        /// The key.
        key: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// Additional layer stores work with the overlay driver only.
    #[error(
        "storage.conf sets driver = \"{0}\"; additional layer stores need the \"overlay\" driver \
         (changing the driver of existing storage loses its images: see `podman system reset`)"
    )]
    Driver(String),
}

/// An edited file.
#[derive(Debug, PartialEq, Eq)]
pub struct Edited {
    /// Its new text.
    pub text: String,
    /// Whether anything changed.
    pub changed: bool,
    /// What the user should know.
    pub warnings: Vec<String>,
}

/// `storage.conf` with `"<store>:ref"` first in
/// `[storage.options] additionallayerstores` and the overlay driver.
/// containers/storage before 1.45 asks only the first store of the list.
pub fn add_layer_store(storage_conf: &str, store: &Path) -> Result<Edited, ConfEditError> {
    const FILE: &str = "storage.conf";
    let mut doc = parse(FILE, storage_conf)?;
    let mut warnings = Vec::new();
    let mut changed = false;
    let storage = table(doc.as_table_mut(), "storage", FILE)?;
    match storage.get("driver").map(|d| d.as_str()) {
        None | Some(Some("")) => {
            storage["driver"] = toml_edit::value("overlay");
            changed = true;
        }
        Some(Some("overlay")) => {}
        Some(Some(other)) => return Err(ConfEditError::Driver(other.to_owned())),
        Some(None) => {
            return Err(ConfEditError::Type {
                file: FILE,
                key: "storage.driver",
                expected: "a string",
            });
        }
    }
    let options = table(storage, "options", FILE)?;
    let entry = format!("{}:ref", store.display());
    let stores = match options.get_mut("additionallayerstores") {
        None => {
            options["additionallayerstores"] = toml_edit::value(Array::new());
            options["additionallayerstores"]
                .as_array_mut()
                .expect("just inserted")
        }
        Some(item) => item.as_array_mut().ok_or(ConfEditError::Type {
            file: FILE,
            key: "storage.options.additionallayerstores",
            expected: "an array of strings",
        })?,
    };
    let position = stores
        .iter()
        .position(|v| v.as_str() == Some(entry.as_str()));
    if position != Some(0) {
        if let Some(i) = position {
            stores.remove(i);
        }
        let others: Vec<String> = stores
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        if !others.is_empty() {
            warnings.push(format!(
                "containers/storage before 1.45 (Podman 4) asks only the first additional layer \
                 store; lazyfs's now comes before {}",
                others.join(", ")
            ));
        }
        stores.insert(0, entry);
        changed = true;
    }
    Ok(Edited {
        text: doc.to_string(),
        changed,
        warnings,
    })
}

/// lazyfsd's config with `layer_store = "<store>"`.
pub fn set_layer_store(daemon_conf: &str, store: &Path) -> Result<Edited, ConfEditError> {
    const FILE: &str = "lazyfsd's config";
    let mut doc = parse(FILE, daemon_conf)?;
    let wanted = store.display().to_string();
    let current = match doc.get("layer_store") {
        None => None,
        Some(item) => Some(item.as_str().ok_or(ConfEditError::Type {
            file: FILE,
            key: "layer_store",
            expected: "a path",
        })?),
    };
    let changed = current != Some(wanted.as_str());
    if changed {
        doc["layer_store"] = toml_edit::value(wanted);
    }
    Ok(Edited {
        text: doc.to_string(),
        changed,
        warnings: Vec::new(),
    })
}

fn parse(file: &'static str, text: &str) -> Result<DocumentMut, ConfEditError> {
    text.parse()
        .map_err(|e: toml_edit::TomlError| ConfEditError::Parse {
            file,
            message: e.to_string(),
        })
}

/// The table `key` of `parent`, made when missing.
fn table<'a>(
    parent: &'a mut Table,
    key: &'static str,
    file: &'static str,
) -> Result<&'a mut Table, ConfEditError> {
    let item = parent
        .entry(key)
        .or_insert_with(|| Item::Table(Table::new()));
    item.as_table_mut().ok_or(ConfEditError::Type {
        file,
        key,
        expected: "a table",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: &str = "/var/lib/lazyfs/store";

    #[test]
    fn an_empty_storage_conf_gets_the_driver_and_the_store() {
        let edited = add_layer_store("", Path::new(STORE)).unwrap();
        assert!(edited.changed && edited.warnings.is_empty());
        let parsed: toml::Table = toml::from_str(&edited.text).unwrap();
        assert_eq!(parsed["storage"]["driver"].as_str(), Some("overlay"));
        let stores = parsed["storage"]["options"]["additionallayerstores"]
            .as_array()
            .unwrap();
        assert_eq!(stores.len(), 1);
        assert_eq!(stores[0].as_str(), Some("/var/lib/lazyfs/store:ref"));
        let again = add_layer_store(&edited.text, Path::new(STORE)).unwrap();
        assert!(!again.changed, "a second run changes nothing");
        assert_eq!(again.text, edited.text);
    }

    #[test]
    fn an_existing_storage_conf_keeps_its_settings_and_comments() {
        let before = "# site storage\n[storage]\ndriver = \"overlay\" # fast\ngraphroot = \"/srv/containers\"\n\n[storage.options]\n# other stores\nadditionallayerstores = [\"/var/lib/stargz-store/store:ref\"]\nmount_program = \"\"\n\n[storage.options.overlay]\nmountopt = \"nodev\"\n";
        let edited = add_layer_store(before, Path::new(STORE)).unwrap();
        assert!(edited.changed);
        for kept in [
            "# site storage",
            "driver = \"overlay\" # fast",
            "graphroot = \"/srv/containers\"",
            "# other stores",
            "mountopt = \"nodev\"",
        ] {
            assert!(
                edited.text.contains(kept),
                "lost {kept:?}:\n{}",
                edited.text
            );
        }
        let parsed: toml::Table = toml::from_str(&edited.text).unwrap();
        let stores: Vec<&str> = parsed["storage"]["options"]["additionallayerstores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            stores,
            [
                "/var/lib/lazyfs/store:ref",
                "/var/lib/stargz-store/store:ref"
            ]
        );
        assert_eq!(edited.warnings.len(), 1, "{:?}", edited.warnings);
        assert!(edited.warnings[0].contains("stargz-store"));
    }

    #[test]
    fn a_store_listed_later_moves_first() {
        let before = "[storage]\n[storage.options]\nadditionallayerstores = [\"/a:ref\", \"/var/lib/lazyfs/store:ref\"]\n";
        let edited = add_layer_store(before, Path::new(STORE)).unwrap();
        let parsed: toml::Table = toml::from_str(&edited.text).unwrap();
        let stores = parsed["storage"]["options"]["additionallayerstores"]
            .as_array()
            .unwrap();
        assert_eq!(stores.len(), 2, "{}", edited.text);
        assert_eq!(stores[0].as_str(), Some("/var/lib/lazyfs/store:ref"));
    }

    #[test]
    fn another_driver_or_bad_toml_is_refused() {
        let err = add_layer_store("[storage]\ndriver = \"vfs\"\n", Path::new(STORE)).unwrap_err();
        assert!(err.to_string().contains("\"overlay\" driver"), "{err}");
        let err = add_layer_store("[storage\n", Path::new(STORE)).unwrap_err();
        assert!(matches!(err, ConfEditError::Parse { .. }), "{err}");
        let err = add_layer_store(
            "[storage.options]\nadditionallayerstores = \"x\"\n",
            Path::new(STORE),
        )
        .unwrap_err();
        assert!(err.to_string().contains("array"), "{err}");
    }

    #[test]
    fn lazyfsd_config_gets_the_layer_store_before_its_tables() {
        let before = "# lazyfsd\nquota = \"20G\"\n\n[registry]\ninsecure = [\"r:5000\"]\n";
        let edited = set_layer_store(before, Path::new(STORE)).unwrap();
        assert!(edited.changed);
        assert!(edited.text.starts_with("# lazyfsd\n"), "{}", edited.text);
        let config: lazy_control::config::DaemonConfig = toml::from_str(&edited.text).unwrap();
        assert_eq!(config.layer_store, Path::new(STORE));
        assert_eq!(config.quota, "20G");
        assert_eq!(config.registry.insecure, ["r:5000"]);
        assert!(
            !set_layer_store(&edited.text, Path::new(STORE))
                .unwrap()
                .changed
        );
        assert!(set_layer_store("", Path::new(STORE)).unwrap().changed);
    }
}

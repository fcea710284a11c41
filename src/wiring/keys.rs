//! `quloud init` and `quloud key show`: the master key on paper; and a node's identity file.

use super::common::{key_path, load_master_key, qr};
use super::files;
use crate::domain::identity::{NodeIdentity, IDENTITY_LEN};
use crate::domain::keys::MasterKey;
use crate::domain::paper;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Creates the master key; refuses to overwrite one.
pub fn init(home: &Path) -> Result<()> {
    save_new_key(home, &MasterKey::generate())
}

/// Writes `key` as the master key of a new vault in `home` and prints it; refuses to overwrite one.
pub fn save_new_key(home: &Path, key: &MasterKey) -> Result<()> {
    let text = paper::encode(key);
    files::create_private_dir(home)?;
    files::write_new_private(&key_path(home), format!("{text}\n").as_bytes()).with_context(|| {
        format!(
            "a master key already exists at {}; refusing to overwrite it (use `quloud key show --reveal` to see it)",
            key_path(home).display()
        )
    })?;
    println!("Created the master key of a new vault in {}.\n", home.display());
    print_paper_key(&text, true)?;
    Ok(())
}

fn print_paper_key(text: &str, with_qr: bool) -> Result<()> {
    println!("Your paper key (write it down, keep it safe; anyone holding it can read your vault):\n");
    println!("    {text}\n");
    if with_qr {
        println!("{}", qr(text)?);
    }
    println!("With this key and the fabric you can restore everything on a new machine.");
    Ok(())
}

/// `quloud key show --reveal [--qr]`.
pub fn key_show(home: &Path, reveal: bool, with_qr: bool) -> Result<()> {
    if !reveal {
        bail!("this prints your master secret; run `quloud key show --reveal` if no one is watching");
    }
    let key = load_master_key(home)?;
    print_paper_key(&paper::encode(&key), with_qr)
}

/// Loads the node identity at `path`, creating it (mode 0600) if missing.
pub fn load_or_create_identity(path: &Path) -> Result<NodeIdentity> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let arr: [u8; IDENTITY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!(
                    "node key file {} is damaged ({} bytes, expected {IDENTITY_LEN})",
                    path.display(),
                    bytes.len()
                )
            })?;
            Ok(NodeIdentity::from_bytes(&arr))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = NodeIdentity::generate();
            files::write_new_private(path, &id.to_bytes())
                .with_context(|| format!("cannot create node key file {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read node key file {}", path.display())),
    }
}

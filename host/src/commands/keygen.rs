//! `chassis keygen`: a worker's Ed25519 signing key, NAME.key and
//! NAME.pub.

use super::*;

/// `chassis keygen`'s arguments.
#[derive(clap::Args)]
pub struct KeygenCommand {
    /// The path and base name of the two files (e.g. keys/worker-a).
    name: PathBuf,
}

impl KeygenCommand {
    /// Write the two files.
    pub async fn execute(self) -> Result<()> {
        keygen(&self.name)
    }
}

/// `chassis keygen NAME`: NAME.key (mode 600) and NAME.pub, never over
/// existing files.
fn keygen(name: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let key = crate::serve::queue::trust::WorkerKey::generate().map_err(anyhow::Error::msg)?;
    let with = |ext: &str| {
        let mut file = name.as_os_str().to_owned();
        file.push(ext);
        PathBuf::from(file)
    };
    let (private, public) = (with(".key"), with(".pub"));
    for path in [&private, &public] {
        if path.exists() {
            bail!("{} exists: not overwritten", path.display());
        }
    }
    let write = |path: &Path, text: &[u8], mode: u32| -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(text)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", path.display()))
    };
    write(&private, key.to_file_text().as_bytes(), 0o600)?;
    write(&public, key.public_file_text().as_bytes(), 0o644)?;
    out(format_args!(
        "wrote {} (secret: the worker's nats.signing_key, or a deployer's chassis deploy --key) and {} (public: clients' --worker-key, or workers' --deployer-key)\nkey {}",
        private.display(),
        public.display(),
        key.public_hex()
    ))
}

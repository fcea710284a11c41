//! The hub's TLS identity: a private CA and a server certificate for the hub's public name,
//! made once with `openssl` (P-256), and the CA's PEM form that a house writes from an invite.

use anyhow::{bail, Context, Result};
use base64::Engine;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of the hub's TLS identity, under the hub's directory.
pub struct HubTls {
    /// The CA certificate (PEM), handed to houses.
    pub ca_pem: PathBuf,
    /// The CA certificate (DER), put into invites.
    pub ca_der: PathBuf,
    /// The server certificate and its key (PEM).
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

impl HubTls {
    /// The files under `dir` (made or not).
    pub fn at(dir: &Path) -> HubTls {
        HubTls {
            ca_pem: dir.join("ca.pem"),
            ca_der: dir.join("ca.der"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl").current_dir(dir).args(args).output().context(
        "cannot run openssl, which makes the hub's CA on first run: install it with `sudo apt-get install -y openssl`",
    )?;
    if !out.status.success() {
        bail!("openssl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Makes the CA and the server certificate under `dir` unless they exist. `public` is the name
/// or IP friends reach the hub at; loopback is always included (the hub's own clients).
pub fn ensure_certificates(dir: &Path, public: &str) -> Result<HubTls> {
    let tls = HubTls::at(dir);
    if tls.ca_der.exists() && tls.cert.exists() && tls.key.exists() {
        return Ok(tls);
    }
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "3650", "-subj", "/CN=Quloud hub CA"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
    openssl(dir, &ca)?;
    let mut req = vec!["req"];
    req.extend(ec);
    req.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=quloud-hub"]);
    openssl(dir, &req)?;
    let san = match public.parse::<std::net::IpAddr>() {
        Ok(_) => format!("IP:{public}"),
        Err(_) => format!("DNS:{public}"),
    };
    let ext = format!("subjectAltName={san},IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
    std::fs::write(dir.join("san.ext"), ext)?;
    let sign = ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"];
    let rest = ["-out", "server.pem", "-days", "3650", "-extfile", "san.ext"];
    openssl(dir, &sign.into_iter().chain(rest).collect::<Vec<_>>())?;
    openssl(dir, &["x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der"])?;
    Ok(tls)
}

/// The PEM text of a DER certificate.
pub fn pem_of_der(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

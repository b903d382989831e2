//! The throwaway development PKI `serve` writes when the configuration
//! allows it and the files are missing.

use std::path::{Path, PathBuf};

use crate::config::Config;

/// Generate the development PKI when the config allows it and files are missing.
pub fn ensure_dev_pki(cfg: &Config) -> Result<(), String> {
    if cfg.signing.pkcs11_uri().is_some() {
        // A token's key belongs to a real CA's certificate, never a dev one.
        return Ok(());
    }
    let files = [
        &cfg.signing.certificate,
        &cfg.signing.key,
        &cfg.tls.certificate,
        &cfg.tls.key,
    ];
    let missing = files.iter().any(|p| !cfg.resolve(p).exists());
    if !missing || !cfg.signing.generate_if_missing {
        return Ok(());
    }
    let ca_cert = cfg
        .trust
        .ca
        .first()
        .or(cfg.signing.chain.first())
        .map(|p| cfg.resolve(p))
        .unwrap_or_else(|| {
            cfg.resolve(&cfg.signing.certificate)
                .with_file_name("ca.pem")
        });
    let ca_key = ca_cert.with_extension("key");
    tracing::warn!(
        signing = %cfg.resolve(&cfg.signing.certificate).display(),
        "certificate files missing: generating a THROWAWAY development CA, signing and TLS certificate (set [signing] generate_if_missing = false in production)"
    );
    crate::certs::write_dev_pki(
        &crate::certs::DevPkiPaths {
            ca_cert: &ca_cert,
            ca_key: Some(&ca_key),
            signing_cert: &cfg.resolve(&cfg.signing.certificate),
            signing_key: &cfg.resolve(&cfg.signing.key),
            tls_cert: &cfg.resolve(&cfg.tls.certificate),
            tls_key: &cfg.resolve(&cfg.tls.key),
        },
        &cfg.provider.name,
        cfg.provider_domain(),
        &cfg.provider.hostname,
    )
    .map_err(|e| format!("generating development certificates: {e}"))?;
    let idx = cfg.resolve(&cfg.trust.index);
    if !idx.exists() {
        let text = crate::layout::own_index_text(&cfg.provider.name, cfg.provider_domain());
        let rel = pathdiff(
            &cfg.resolve(&cfg.signing.certificate),
            idx.parent().unwrap_or(Path::new(".")),
        );
        let text = text.replace("certs/signing.pem", &rel);
        std::fs::write(&idx, text).map_err(|e| format!("{}: {e}", idx.display()))?;
    }
    Ok(())
}

fn pathdiff(target: &Path, base: &Path) -> String {
    let t: Vec<_> = target.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = t.iter().zip(b.iter()).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return target.display().to_string();
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    out.display().to_string()
}

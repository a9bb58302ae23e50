//! The TLS flags as the library's options. Each file is opened here first, so that a missing
//! or unreadable one is reported with the flag that named it (`--cacert /x/ca.pem: No such
//! file or directory`), as a command line user looks for it.

use std::fs::File;
use std::io;
use std::path::Path;

use wsc::TlsOptions;

use crate::args::ClientArgs;
use crate::exit::CliError;

/// The TLS options of `--cacert`, `--cert`, `--key` and `-k`.
pub fn options(args: &ClientArgs) -> Result<TlsOptions, CliError> {
    let mut tls = TlsOptions::new().danger_accept_invalid_certs(args.insecure);
    if let Some(ca) = &args.cacert {
        readable("--cacert", ca)?;
        tls = tls.add_ca_pem_file(ca)?;
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        readable("--cert", cert)?;
        readable("--key", key)?;
        tls = tls.client_cert_pem_files(cert, key)?;
    }
    Ok(tls)
}

/// Fails, naming `flag` and `path`, unless `path` opens for reading. Nothing is read: a pipe
/// (`--cacert <(...)`) keeps all its bytes for the library.
pub fn readable(flag: &str, path: &Path) -> Result<(), CliError> {
    let opened = File::open(path).and_then(|file| {
        if file.metadata()?.is_dir() {
            // Opens, but fails only at the first read, in the library's words.
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        Ok(())
    });
    opened.map_err(|e| CliError::Usage(format!("{flag} {}: {e}", path.display())))
}

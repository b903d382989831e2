//! A private key that stays in a PKCS#11 token (an HSM, SoftHSM2), through
//! OpenSSL's `pkcs11` engine (libp11, Debian `libengine-pkcs11-openssl`).
//!
//! The openssl crate wraps neither ENGINE nor OSSL_STORE key loading, hence
//! these few declarations of libcrypto functions (openssl-sys already links
//! libcrypto). The key handle OpenSSL returns is an ordinary `EVP_PKEY`
//! whose private operations the engine sends to the token, so every
//! signature pecd makes (CMS for bustas, receipts and log seals) goes
//! through the token while the key never enters this process.
#![allow(unsafe_code)]

use foreign_types::ForeignType;
use openssl::pkey::{PKey, Private};
use std::ffi::{c_char, c_int, c_void, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[allow(non_camel_case_types)]
type UI_METHOD = c_void;

extern "C" {
    fn ENGINE_by_id(id: *const c_char) -> *mut openssl_sys::ENGINE;
    fn ENGINE_ctrl_cmd_string(
        e: *mut openssl_sys::ENGINE,
        cmd_name: *const c_char,
        arg: *const c_char,
        cmd_optional: c_int,
    ) -> c_int;
    fn ENGINE_init(e: *mut openssl_sys::ENGINE) -> c_int;
    fn ENGINE_free(e: *mut openssl_sys::ENGINE) -> c_int;
    fn ENGINE_load_private_key(
        e: *mut openssl_sys::ENGINE,
        key_id: *const c_char,
        ui_method: *mut UI_METHOD,
        callback_data: *mut c_void,
    ) -> *mut openssl_sys::EVP_PKEY;
    fn UI_null() -> *const UI_METHOD;
}

/// The engine, initialised once per process with its module. libp11 keeps
/// the module loaded and its sessions in the engine; a second engine on the
/// same module would call `C_Initialize` again, which tokens refuse.
struct Engine {
    ptr: *mut openssl_sys::ENGINE,
    module: PathBuf,
}

// SAFETY: ENGINE handles are shared by OpenSSL between threads under its own
// locks; after initialisation we only pass the pointer to thread-safe calls
// (`ENGINE_load_private_key`, serialised by the mutex below anyway).
unsafe impl Send for Engine {}

static ENGINE: Mutex<Option<Engine>> = Mutex::new(None);

/// Why the token's key is not at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pkcs11Error {
    /// A string handed to the engine holds a NUL byte: which one.
    Nul(&'static str),
    /// Another module is already loaded in this process: that one.
    ModuleChanged(PathBuf),
    /// OpenSSL has no `pkcs11` engine: OpenSSL's reasons.
    NoEngine(String),
    /// The module's path is not UTF-8.
    ModuleNotUtf8(PathBuf),
    /// The engine cannot load the module: the module and OpenSSL's reasons.
    ModuleLoad {
        /// The module (`signing.pkcs11_module`).
        module: PathBuf,
        /// What the engine said.
        reasons: String,
    },
    /// The engine refused the PIN: its reasons.
    PinRefused(String),
    /// The token refused the key: the URI and the token's reasons.
    KeyRefused {
        /// The key's URI (`signing.key`).
        uri: String,
        /// What the token said (`PIN incorrect`, `object not found`, …).
        reasons: String,
    },
}

impl std::fmt::Display for Pkcs11Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pkcs11Error::Nul(what) => write!(f, "{what} contains a NUL byte"),
            Pkcs11Error::ModuleChanged(m) => write!(
                f,
                "the PKCS#11 module is already {} in this process; changing pkcs11_module needs a restart",
                m.display()
            ),
            Pkcs11Error::NoEngine(why) => write!(
                f,
                "OpenSSL has no \"pkcs11\" engine (install libp11's engine, Debian package libengine-pkcs11-openssl): {why}"
            ),
            Pkcs11Error::ModuleNotUtf8(m) => write!(f, "{}: not UTF-8", m.display()),
            Pkcs11Error::ModuleLoad { module, reasons } => write!(
                f,
                "the pkcs11 engine cannot load {}: {reasons}",
                module.display()
            ),
            Pkcs11Error::PinRefused(why) => write!(f, "the pkcs11 engine refused the PIN: {why}"),
            Pkcs11Error::KeyRefused { uri, reasons } => {
                write!(f, "the token refused the key {uri}: {reasons}")?;
                if reasons.contains("PIN") {
                    write!(
                        f,
                        " (the PIN comes from signing.pin_file, else {})",
                        crate::config::PIN_ENV
                    )
                } else if reasons.contains("not found") {
                    f.write_str(" (no such key or token: compare the URI's token= and object= with `pkcs11-tool --module … --list-objects`)")
                } else {
                    Ok(())
                }
            }
        }
    }
}

impl std::error::Error for Pkcs11Error {}

/// OpenSSL's error queue, emptied: the reasons the engine and the token
/// gave (`PIN incorrect`, `object not found`), without OpenSSL's codes.
fn openssl_errors() -> String {
    let stack = openssl::error::ErrorStack::get();
    let reasons: Vec<String> = stack
        .errors()
        .iter()
        .map(|e| {
            e.reason()
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string())
        })
        .collect();
    if reasons.is_empty() {
        "no detail from OpenSSL".into()
    } else {
        reasons.join("; ")
    }
}

fn cstring(what: &'static str, s: &str) -> Result<CString, Pkcs11Error> {
    CString::new(s).map_err(|_| Pkcs11Error::Nul(what))
}

/// The engine for `module`, loaded and initialised on first use.
fn engine(module: &Path) -> Result<*mut openssl_sys::ENGINE, Pkcs11Error> {
    let mut g = ENGINE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = g.as_ref() {
        if e.module != module {
            return Err(Pkcs11Error::ModuleChanged(e.module.clone()));
        }
        return Ok(e.ptr);
    }
    openssl_sys::init();
    let id = cstring("engine id", "pkcs11")?;
    // SAFETY: a NUL-terminated string; the result is null or an engine
    // holding a structural reference we own.
    let ptr = unsafe { ENGINE_by_id(id.as_ptr()) };
    if ptr.is_null() {
        return Err(Pkcs11Error::NoEngine(openssl_errors()));
    }
    let module_s = module
        .to_str()
        .ok_or_else(|| Pkcs11Error::ModuleNotUtf8(module.to_path_buf()))?;
    let cmd = cstring("command", "MODULE_PATH")?;
    let arg = cstring("pkcs11_module", module_s)?;
    // SAFETY: `ptr` is a live engine; both strings outlive the call, which
    // copies them.
    let set = unsafe { ENGINE_ctrl_cmd_string(ptr, cmd.as_ptr(), arg.as_ptr(), 0) };
    // SAFETY: as above; init takes a functional reference kept for the
    // process's lifetime (the key handles need the engine).
    if set != 1 || unsafe { ENGINE_init(ptr) } != 1 {
        let err = openssl_errors();
        // SAFETY: drops our structural reference; nothing else holds it.
        unsafe { ENGINE_free(ptr) };
        return Err(Pkcs11Error::ModuleLoad {
            module: module.to_path_buf(),
            reasons: err,
        });
    }
    let quiet = cstring("command", "QUIET")?;
    // SAFETY: `ptr` is live; QUIET takes no argument. Optional (1): an
    // engine without it only logs more, to stderr.
    unsafe { ENGINE_ctrl_cmd_string(ptr, quiet.as_ptr(), std::ptr::null(), 1) };
    *g = Some(Engine {
        ptr,
        module: module.to_path_buf(),
    });
    Ok(ptr)
}

/// The private key `uri` (RFC 7512) of the token that `module` drives, after
/// logging in with `pin`. Nothing ever prompts on a terminal: a missing or
/// wrong PIN is an error naming the token's answer (`PIN incorrect`, …).
pub fn load_private_key(module: &Path, uri: &str, pin: &str) -> Result<PKey<Private>, Pkcs11Error> {
    let e = engine(module)?;
    // Keys are loaded rarely (start, reload) and the PIN is engine state:
    // one at a time, so a reload never logs in with another load's PIN.
    let _g = ENGINE.lock().unwrap_or_else(|p| p.into_inner());
    let cmd = cstring("command", "PIN")?;
    let pin_c = cstring("the PIN", pin)?;
    let uri_c = cstring("signing.key", uri)?;
    // SAFETY: `e` is the live, initialised engine; libp11 copies the PIN.
    if unsafe { ENGINE_ctrl_cmd_string(e, cmd.as_ptr(), pin_c.as_ptr(), 0) } != 1 {
        return Err(Pkcs11Error::PinRefused(openssl_errors()));
    }
    // SAFETY: `e` is live; the URI string outlives the call; `UI_null()` is a
    // static method that answers no prompt, so the engine never reads a
    // terminal; the result is null or an EVP_PKEY we own.
    let key = unsafe {
        ENGINE_load_private_key(
            e,
            uri_c.as_ptr(),
            UI_null() as *mut UI_METHOD,
            std::ptr::null_mut(),
        )
    };
    if key.is_null() {
        return Err(Pkcs11Error::KeyRefused {
            uri: uri.to_string(),
            reasons: openssl_errors(),
        });
    }
    // SAFETY: `key` is a non-null EVP_PKEY whose one reference we own; PKey
    // takes it over and frees it on drop.
    Ok(unsafe { PKey::from_ptr(key) })
}

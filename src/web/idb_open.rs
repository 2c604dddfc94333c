//! Opening an IndexedDB database with its upgrade steps, bounded in time: a blocked upgrade or a delete fails with a clear error instead of waiting forever.
//!
//! IndexedDB runs an upgrade (and a delete) only once every other connection
//! to the database has closed. A connection that does not close on
//! `versionchange` (another page of the extension, an older build still
//! running) holds it back with nothing but a `blocked` event, and the open
//! request stays pending. Here the request is raced against timers: blocked
//! for [`BLOCKED_WAIT_MS`], or pending for [`OPEN_WAIT_MS`] at all, it fails
//! with [`NetError::Storage`] naming the cause. A connection that still opens
//! after that is closed at once (the next open tries again).

use std::cell::Cell;
use std::rc::Rc;

use gloo_timers::callback::Timeout;
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbFactory, IdbOpenDbRequest, IdbVersionChangeEvent};

use super::net::error::{js_message, NetError};

/// How long an upgrade or a delete may stay blocked by other connections.
pub const BLOCKED_WAIT_MS: u32 = 10_000;
/// How long opening may take at all (the upgrade steps included).
pub const OPEN_WAIT_MS: u32 = 60_000;

/// The name given to the rejection of an open that met a newer version.
const NEWER: &str = "VersionError";

/// The upgrade steps of a database: called inside the upgrade transaction
/// with the database and the version it had (0 when new).
pub type UpgradeSteps = fn(&IdbDatabase, u32) -> Result<(), JsValue>;

fn factory() -> Result<IdbFactory, NetError> {
    Reflect::get(&js_sys::global(), &"indexedDB".into())
        .ok()
        .and_then(|f| f.dyn_into::<IdbFactory>().ok())
        .ok_or_else(|| NetError::Storage("IndexedDB is not available here".into()))
}

fn warn(text: &str) {
    web_sys::console::warn_1(&JsValue::from_str(&format!("swarmdrop: {text}")));
}

fn info(text: &str) {
    web_sys::console::info_1(&JsValue::from_str(&format!("swarmdrop: {text}")));
}

/// What the request's handlers share: whether the answer was given (by the
/// request or by a timer), and whether the request was blocked.
#[derive(Default)]
struct Settled {
    done: Cell<bool>,
    blocked: Cell<bool>,
}

impl Settled {
    /// Claims the answer; false when it was given already.
    fn claim(&self) -> bool {
        !self.done.replace(true)
    }
}

fn reject_with(reject: &Function, text: String) {
    let _ = reject.call1(&JsValue::NULL, &js_sys::Error::new(&text));
}

/// Opens `name` at `version`, running `steps` when the database is older,
/// and returns the connection. A database at a newer version fails with
/// [`NetError::NewerSchema`]. The connection closes itself on
/// `versionchange`, so that it never blocks a later upgrade or delete.
pub async fn open(name: &str, version: u32, steps: UpgradeSteps) -> Result<IdbDatabase, NetError> {
    let request = factory()?
        .open_with_u32(name, version)
        .map_err(|e| NetError::Storage(js_message(&e)))?;
    let name = name.to_owned();
    let settled = Rc::new(Settled::default());
    let promise = Promise::new(&mut |resolve: Function, reject: Function| {
        let on_upgrade = {
            let request = request.clone();
            let name = name.clone();
            Closure::once_into_js(move |event: IdbVersionChangeEvent| {
                let old = event.old_version() as u32;
                info(&format!("upgrading {name} from version {old} to {version}"));
                let outcome = request
                    .result()
                    .and_then(|db| db.dyn_into::<IdbDatabase>())
                    .and_then(|db| steps(&db, old));
                if let Err(e) = outcome {
                    warn(&format!(
                        "upgrading {name} to version {version} failed: {}",
                        js_message(&e)
                    ));
                    // The request then fails with an AbortError (onerror).
                    if let Some(tx) = request.transaction() {
                        let _ = tx.abort();
                    }
                }
            })
        };
        request.set_onupgradeneeded(Some(on_upgrade.unchecked_ref()));

        let on_success = {
            let request = request.clone();
            let settled = settled.clone();
            let resolve = resolve.clone();
            let name = name.clone();
            Closure::once_into_js(move || {
                let Ok(db) = request.result().and_then(|db| db.dyn_into::<IdbDatabase>()) else {
                    if settled.claim() {
                        resolve.call1(&JsValue::NULL, &JsValue::NULL).ok();
                    }
                    return;
                };
                close_on_version_change(&db);
                if settled.claim() {
                    let _ = resolve.call1(&JsValue::NULL, &db);
                } else {
                    // The caller gave up on this request: nobody uses it.
                    info(&format!("{name} opened after the wait; closing it"));
                    db.close();
                }
            })
        };
        request.set_onsuccess(Some(on_success.unchecked_ref()));

        let on_error = {
            let request = request.clone();
            let settled = settled.clone();
            let reject = reject.clone();
            let name = name.clone();
            Closure::once_into_js(move || {
                let error = request.error();
                let newer = matches!(&error, Ok(Some(e)) if e.name() == "VersionError");
                let text = match error {
                    Ok(Some(e)) if e.name() == "VersionError" => format!(
                        "{name} has a newer version than {version}: it was written by a newer \
                         Swarmdrop (update the extension)"
                    ),
                    Ok(Some(e)) => format!("opening {name}: {}: {}", e.name(), e.message()),
                    _ => format!("opening {name} failed"),
                };
                warn(&text);
                if settled.claim() {
                    let error = js_sys::Error::new(&text);
                    if newer {
                        error.set_name(NEWER);
                    }
                    let _ = reject.call1(&JsValue::NULL, &error);
                }
            })
        };
        request.set_onerror(Some(on_error.unchecked_ref()));

        let on_blocked = {
            let settled = settled.clone();
            let reject = reject.clone();
            let name = name.clone();
            Closure::once_into_js(move |event: IdbVersionChangeEvent| {
                let old = event.old_version() as u32;
                settled.blocked.set(true);
                warn(&format!(
                    "upgrading {name} from version {old} to {version} is blocked: another \
                     connection is open; waiting {} s for it to close",
                    BLOCKED_WAIT_MS / 1000
                ));
                Timeout::new(BLOCKED_WAIT_MS, move || {
                    if settled.claim() {
                        let text = blocked_message(&name, version);
                        warn(&text);
                        reject_with(&reject, text);
                    }
                })
                .forget();
            })
        };
        request.set_onblocked(Some(on_blocked.unchecked_ref()));

        let settled = settled.clone();
        let name = name.clone();
        Timeout::new(OPEN_WAIT_MS, move || {
            if settled.claim() {
                let text = if settled.blocked.get() {
                    blocked_message(&name, version)
                } else {
                    format!(
                        "opening {name} took more than {} s: the browser's storage is not \
                         answering",
                        OPEN_WAIT_MS / 1000
                    )
                };
                warn(&text);
                reject_with(&reject, text);
            }
        })
        .forget();
    });
    let value = JsFuture::from(promise).await.map_err(|e| {
        let newer = Reflect::get(&e, &"name".into())
            .ok()
            .and_then(|n| n.as_string());
        if newer.as_deref() == Some(NEWER) {
            NetError::NewerSchema(js_message_only(&e))
        } else {
            NetError::Storage(js_message_only(&e))
        }
    })?;
    value
        .dyn_into::<IdbDatabase>()
        .map_err(|_| NetError::Storage(format!("opening {name} gave no database")))
}

/// The text of a rejection made by this module (an `Error`: its message only).
fn js_message_only(value: &JsValue) -> String {
    Reflect::get(value, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| js_message(value))
}

fn blocked_message(name: &str, version: u32) -> String {
    format!(
        "the upgrade of {name} to version {version} is blocked: another Swarmdrop page, or an \
         older Swarmdrop still running, keeps the database open. Close the other Swarmdrop \
         tabs (or restart the browser), then try again"
    )
}

/// Makes `db` close itself when another context asks for an upgrade or a delete.
pub fn close_on_version_change(db: &IdbDatabase) {
    let me = db.clone();
    let name = db.name();
    let on_change = Closure::once_into_js(move || {
        info(&format!(
            "closing {name}: another context upgrades or deletes it"
        ));
        me.close();
    });
    db.set_onversionchange(Some(on_change.unchecked_ref()));
}

/// Deletes the database `name`. A delete blocked by a connection that does
/// not close is logged and stays queued (the browser runs it once that
/// connection closes); the returned future settles when the delete is done,
/// failed, or blocked for [`BLOCKED_WAIT_MS`].
pub async fn delete(name: &str) -> Result<(), NetError> {
    let request: IdbOpenDbRequest = factory()?
        .delete_database(name)
        .map_err(|e| NetError::Storage(js_message(&e)))?;
    let name = name.to_owned();
    let settled = Rc::new(Settled::default());
    let promise = Promise::new(&mut |resolve: Function, reject: Function| {
        let on_success = {
            let settled = settled.clone();
            let resolve = resolve.clone();
            let name = name.clone();
            Closure::once_into_js(move || {
                if settled.claim() {
                    let _ = resolve.call0(&JsValue::NULL);
                } else {
                    info(&format!("{name} deleted after the wait"));
                }
            })
        };
        request.set_onsuccess(Some(on_success.unchecked_ref()));
        let on_error = {
            let request = request.clone();
            let settled = settled.clone();
            let reject = reject.clone();
            let name = name.clone();
            Closure::once_into_js(move || {
                if settled.claim() {
                    let text = match request.error() {
                        Ok(Some(e)) => format!("deleting {name}: {}: {}", e.name(), e.message()),
                        _ => format!("deleting {name} failed"),
                    };
                    reject_with(&reject, text);
                }
            })
        };
        request.set_onerror(Some(on_error.unchecked_ref()));
        let settled = settled.clone();
        let name = name.clone();
        let on_blocked = Closure::once_into_js(move || {
            warn(&format!(
                "deleting {name} is blocked by an open connection; it is done once that closes"
            ));
            Timeout::new(BLOCKED_WAIT_MS, move || {
                if settled.claim() {
                    reject_with(
                        &reject,
                        format!("deleting {name} is blocked by a connection that stays open"),
                    );
                }
            })
            .forget();
        });
        request.set_onblocked(Some(on_blocked.unchecked_ref()));
    });
    JsFuture::from(promise)
        .await
        .map(|_| ())
        .map_err(|e| NetError::Storage(js_message_only(&e)))
}

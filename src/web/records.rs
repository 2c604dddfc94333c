//! `Records`: the extension's bundle records and send file handles, kept in
//! the one database whose schema `storage.rs` defines.
//!
//! ```js
//! const records = await Records.open(); // upgrades the database if needed
//! await records.put({ id, role: 'receive', state: 'downloading', ... });
//! const all = await records.all();
//! await records.putHandles(id, [fileHandle]);
//! await records.delete(id); // the record and its handles
//! ```

use js_sys::Array;
use wasm_bindgen::prelude::*;

use super::storage::Storage;

/// The bundle records of the extension origin. See the module documentation.
#[wasm_bindgen]
pub struct Records {
    storage: Storage,
}

#[wasm_bindgen]
impl Records {
    /// Opens the database (creating or upgrading it, once per context).
    pub async fn open() -> Result<Records, JsValue> {
        Ok(Records {
            storage: Storage::open().await?,
        })
    }

    /// Every bundle record.
    pub async fn all(&self) -> Result<Array, JsValue> {
        Ok(self.storage.records().await?.into_iter().collect())
    }

    /// The bundle record `id`, or `undefined`.
    pub async fn get(&self, id: String) -> Result<JsValue, JsValue> {
        Ok(self
            .storage
            .record(&id)
            .await?
            .unwrap_or(JsValue::UNDEFINED))
    }

    /// Writes a bundle record (an object with a string `id`).
    pub async fn put(&self, record: JsValue) -> Result<(), JsValue> {
        Ok(self.storage.put_record(&record).await?)
    }

    /// Deletes the bundle record `id` and its file handles.
    pub async fn delete(&self, id: String) -> Result<(), JsValue> {
        Ok(self.storage.delete_record(&id).await?)
    }

    /// The file handles kept for the send `id`, or `undefined`.
    pub async fn handles(&self, id: String) -> Result<JsValue, JsValue> {
        Ok(self
            .storage
            .handles(&id)
            .await?
            .unwrap_or(JsValue::UNDEFINED))
    }

    /// Keeps the file handles of the send `id`.
    #[wasm_bindgen(js_name = putHandles)]
    pub async fn put_handles(&self, id: String, handles: JsValue) -> Result<(), JsValue> {
        Ok(self.storage.put_handles(&id, &handles).await?)
    }
}

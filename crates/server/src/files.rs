//! What the data dir keeps for sessions, as the routes and the fleet's
//! provisioning both reach it: saved profiles, recordings and uploaded
//! extensions. Each is `None` where this server cannot offer it (no
//! profiles folder in some unit tests, no ffmpeg for recordings).

use std::path::PathBuf;
use std::sync::Arc;

use anchorage_core::ExtensionId;

use crate::profiles::ProfileFiles;
use crate::recordings::Recordings;

/// The data dir's parts for sessions. Cheap to clone.
#[derive(Clone, Default)]
pub struct SessionFiles {
    /// Saved profiles' files.
    pub profiles: Option<Arc<ProfileFiles>>,
    /// Where recordings go.
    pub recordings: Option<Arc<Recordings>>,
    /// Where uploaded extensions are unpacked (`<root>/<id, 32 hex>`).
    pub extensions_root: Option<PathBuf>,
}

impl SessionFiles {
    /// Where an uploaded extension's files are, where sessions can load extensions.
    pub fn extension_dir(&self, id: ExtensionId) -> Option<PathBuf> {
        self.extensions_root
            .as_ref()
            .map(|root| root.join(id.as_uuid().simple().to_string()))
    }
}

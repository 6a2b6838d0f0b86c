//! The mirror directory: one JSON manifest per object, at
//! `KIND/NAMESPACE/NAME.json` (`KIND/NAME.json` for cluster-scoped kinds),
//! written so the directory watcher never reads half a file (a temporary
//! file renamed into place) and rewritten only where an object changed.
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

/// What one sync changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    pub written: usize,
    pub removed: usize,
}

/// The files of the mirror as last written.
#[derive(Debug)]
pub struct MirrorDir {
    root: PathBuf,
    written: BTreeMap<PathBuf, Vec<u8>>,
    /// Files found in the directory before the first sync (an earlier
    /// run's): removed by the first sync unless still wanted.
    found: Option<BTreeSet<PathBuf>>,
}

impl MirrorDir {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            written: BTreeMap::new(),
            found: None,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes the directory hold exactly `desired` (relative path to
    /// contents).
    pub fn sync(&mut self, desired: &BTreeMap<PathBuf, Vec<u8>>) -> io::Result<Synced> {
        std::fs::create_dir_all(&self.root)?;
        let found = match self.found.take() {
            Some(found) => found,
            None => existing_manifests(&self.root),
        };
        self.found = Some(BTreeSet::new());
        let mut synced = Synced::default();
        for (rel, contents) in desired {
            if self.written.get(rel) == Some(contents) {
                continue;
            }
            write_atomic(&self.root.join(rel), contents)?;
            self.written.insert(rel.clone(), contents.clone());
            synced.written += 1;
        }
        let stale: Vec<PathBuf> = self
            .written
            .keys()
            .filter(|rel| !desired.contains_key(*rel))
            .cloned()
            .chain(found.into_iter().filter(|rel| !desired.contains_key(rel)))
            .collect();
        for rel in stale {
            self.written.remove(&rel);
            match std::fs::remove_file(self.root.join(&rel)) {
                Ok(()) => synced.removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(synced)
    }
}

/// The manifest files under `root`, relative to it.
fn existing_manifests(root: &Path) -> BTreeSet<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.path().strip_prefix(root).ok().map(Path::to_path_buf))
        .filter(|rel| rel.extension().is_some_and(|x| x == "json"))
        .collect()
}

fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("a mirror file has no directory"))?;
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other("a mirror file has no name"))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

/// A path component for an object's namespace or name. The API server
/// allows neither `/` nor `%` in names nor `.` or `..` as a name; anything
/// else outside DNS characters is escaped, so no name can leave its folder
/// or meet another's file.
pub fn component(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => out.push(char::from(b)),
            b'.' if !out.is_empty() => out.push('.'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// Where an object of `kind` (lower-case folder) lives in the mirror.
pub fn object_path(kind: &str, namespace: Option<&str>, name: &str) -> PathBuf {
    let mut p = PathBuf::from(kind.to_ascii_lowercase());
    if let Some(ns) = namespace {
        p.push(component(ns));
    }
    p.push(format!("{}.json", component(name)));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_leave_their_folder() {
        assert_eq!(component("web-0.v2"), "web-0.v2");
        assert_eq!(component(".."), "%2E.");
        assert_eq!(component("a/b"), "a%2Fb");
        assert_eq!(component(""), "%00");
        assert_eq!(
            object_path("Pod", Some("shop"), "web"),
            PathBuf::from("pod/shop/web.json")
        );
        assert_eq!(
            object_path("MeshConfig", None, "mesh"),
            PathBuf::from("meshconfig/mesh.json")
        );
    }

    #[test]
    fn sync_writes_changes_only_and_removes_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mirror");
        std::fs::create_dir_all(root.join("pod/old")).unwrap();
        std::fs::write(root.join("pod/old/left-over.json"), "{}").unwrap();
        let mut m = MirrorDir::new(root.clone());
        let mut want = BTreeMap::new();
        want.insert(PathBuf::from("pod/a/x.json"), b"{\"a\":1}".to_vec());
        want.insert(PathBuf::from("namespace/a.json"), b"{}".to_vec());
        assert_eq!(
            m.sync(&want).unwrap(),
            Synced {
                written: 2,
                removed: 1
            }
        );
        assert!(!root.join("pod/old/left-over.json").exists());
        assert_eq!(m.sync(&want).unwrap(), Synced::default());
        want.insert(PathBuf::from("pod/a/x.json"), b"{\"a\":2}".to_vec());
        want.remove(&PathBuf::from("namespace/a.json"));
        assert_eq!(
            m.sync(&want).unwrap(),
            Synced {
                written: 1,
                removed: 1
            }
        );
        assert_eq!(
            std::fs::read_to_string(root.join("pod/a/x.json")).unwrap(),
            "{\"a\":2}"
        );
        assert!(!root.join("namespace/a.json").exists());
    }
}

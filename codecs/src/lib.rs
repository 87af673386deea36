//! PayMesh codecs (placeholder while the modules are written).

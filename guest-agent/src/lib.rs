//! layerpass guest agent: opens layer disks through dm-verity, mounts EROFS read-only and
//! stacks the layers with overlayfs. The agent itself arrives with a later change; this
//! crate exists so the workspace has its final shape.

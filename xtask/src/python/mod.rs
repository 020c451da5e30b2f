//! Python packaging, as this tool reads and writes it: the PEP 751 lock, the spec's import
//! candidates, PEP 508 markers,
//! wheel names and selection (PEP 425), installation (PEP 427), the dist-info reader and the index's
//! simple JSON pages (PEP 691).

pub mod candidates;
pub mod distinfo;
pub mod index;
pub mod marker;
pub mod pylock;
pub mod wheel;
pub mod yanked;

//! `ferry restore`: an environment recreated from a backup, images included.

pub mod images;

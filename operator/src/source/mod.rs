//! Sources fill the store. Only the file source exists so far; the Kubernetes source
//! (kube-runtime reflectors) feeds the same store.

pub mod file;

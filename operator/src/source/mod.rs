//! Sources fill the store: a directory of YAML (`file`) or the Kubernetes API (`kube`,
//! kube-runtime reflectors). Translation cannot tell them apart.

pub mod file;
pub mod kube;

//! Use cases on the ports: the storage node's request handling (and, next, the owner's services).

pub mod node;
pub mod replay;
pub mod vault;

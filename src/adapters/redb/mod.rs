//! Every redb table definition, with versioned names. Nothing else defines a table.

use redb::TableDefinition;

/// Storage node index: on-disk locator (keyed hash of addr) → sealed chunk record.
pub const NODE_CHUNKS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("node-chunks-v1");

//! Derive macros for X platform thing models: a thin shell that expands through x-codegen's
//! IR and emitter, so hand-written and generated models take one path. Filled by the
//! thing-model issue.

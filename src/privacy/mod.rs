//! GDPR: pseudonymization, mappings, data subjects, classification
//! retention, key rotation.

pub mod gdpr;
pub mod hash_pseudonym;
pub mod json_values;
pub mod mapping;
pub mod subject;

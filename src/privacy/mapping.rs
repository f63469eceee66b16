//! Mapping rows (`pseudonym_mapping`) of the token and encryption strategies, found and
//! written a batch at a time (issue 17): one SELECT finds the existing mappings of
//! every original of the batch through their blind indexes, one INSERT writes the new
//! ones. `audit_pseudonymize(x, 'token')` is a batch of one.
//!
//! One mapping per (strategy, original): the unique index on (strategy, blind_index)
//! decides between concurrent callers. An original another transaction is inserting
//! makes our INSERT wait for it (ON CONFLICT DO NOTHING); its row is then read back, so
//! both callers return the same pseudonym.

use crate::base::spi_util::q;
use crate::base::error::{AuditError, AuditResult};
use audit_db_core::crypto::KeyRing;
use audit_db_core::pseudonym::{self, Strategy};
use pgrx::prelude::*;
use std::collections::HashMap;

/// Blind indexes of `original` under every key of the ring (current first), so a
/// mapping made before a key was added is still found until it is rotated.
pub fn blind_indexes(ring: &KeyRing, original: &str) -> Vec<String> {
    ring.keys().iter().rev().map(|k| pseudonym::blind_index(k, original)).collect()
}

/// One distinct original of a batch that needs a mapping.
struct Wanted<'a> {
    original: &'a str,
    blinds: Vec<String>,
    pseudonym: Option<String>,
}

/// Pseudonym of each blind index that has a mapping of `strategy`.
fn mapped(strategy: Strategy, blinds: Vec<String>) -> AuditResult<HashMap<String, String>> {
    let sql = q("SELECT blind_index, pseudonym_id FROM @extschema@.pseudonym_mapping WHERE strategy = $1 AND blind_index = ANY($2)")?;
    Ok(Spi::connect(|client| {
        let mut out = HashMap::new();
        for r in client.select(
            &sql,
            None,
            &[strategy.name().into(), blinds.into()],
        )? {
            if let (Some(b), Some(p)) = (r.get::<String>(1)?, r.get::<String>(2)?) {
                out.insert(b, p);
            }
        }
        Ok::<_, pgrx::spi::Error>(out)
    })?)
}

/// Fills `pseudonym` of each wanted original that `found` maps (current key first).
fn resolve(wanted: &mut [Wanted<'_>], found: &HashMap<String, String>) {
    for w in wanted.iter_mut().filter(|w| w.pseudonym.is_none()) {
        w.pseudonym = w.blinds.iter().find_map(|b| found.get(b).cloned());
    }
}

/// Writes mappings for the originals that have none; returns what was inserted
/// (blind index -> pseudonym). Originals a concurrent transaction mapped first are
/// left out (ON CONFLICT DO NOTHING) and read back by the caller.
fn insert_new(ring: &KeyRing, strategy: Strategy, missing: &[&Wanted<'_>]) -> AuditResult<HashMap<String, String>> {
    if crate::base::spi_util::in_recovery() {
        return Err(AuditError::read_only_transaction("a new pseudonym mapping cannot be recorded on a hot standby")
            .detail("The token and encryption strategies write one mapping row per new original.")
            .hint("Run it on the primary. Hash pseudonyms (audit_pseudonymize_hash) and mappings that exist already work here."));
    }
    let key = ring.current();
    let mut candidates = Vec::with_capacity(missing.len());
    let mut sealed = Vec::with_capacity(missing.len());
    let mut blinds = Vec::with_capacity(missing.len());
    for w in missing {
        candidates.push(match strategy {
            Strategy::Encryption => pseudonym::encrypt_pseudonym(key, w.original),
            Strategy::Token | Strategy::Hash => pseudonym::new_token(),
        });
        sealed.push(pseudonym::seal_original(key, w.original));
        blinds.push(w.blinds[0].clone());
    }
    let sql = q("INSERT INTO @extschema@.pseudonym_mapping (\"timestamp\", pseudonym_id, original_id, strategy, key_id, blind_index)
             SELECT pg_catalog.now(), u.p, u.o, $4, $5, u.b FROM unnest($1::text[], $2::text[], $3::text[]) AS u(p, o, b)
             ON CONFLICT (strategy, blind_index) DO NOTHING
             RETURNING blind_index, pseudonym_id")?;
    Ok(Spi::connect_mut(|client| {
        let mut out = HashMap::new();
        for r in client.update(
            &sql,
            None,
            &[candidates.into(), sealed.into(), blinds.into(), strategy.name().into(), key.id.as_str().into()],
        )? {
            if let (Some(b), Some(p)) = (r.get::<String>(1)?, r.get::<String>(2)?) {
                out.insert(b, p);
            }
        }
        Ok::<_, pgrx::spi::Error>(out)
    })?)
}

/// The values of `values` that are pseudonyms already, as the mapping table and the
/// key decide (issue 26; never by their first letters): a pseudonym of a mapping row
/// (audit_db's or adopted), a forgotten one (`pseudonym_forgotten`), or an encryption
/// pseudonym a key of the ring opens (AES-GCM: nobody without the key makes one).
pub fn known_pseudonyms<'a>(ring: &KeyRing, values: &[&'a str]) -> AuditResult<std::collections::HashSet<&'a str>> {
    let mut out: std::collections::HashSet<&str> = values
        .iter()
        .copied()
        .filter(|v| pseudonym::classify(v) == Some(Strategy::Encryption) && pseudonym::decrypt_pseudonym(ring, v).is_ok())
        .collect();
    let asked: Vec<String> = values.iter().filter(|v| !out.contains(*v)).map(|v| v.to_string()).collect();
    if asked.is_empty() {
        return Ok(out);
    }
    let sql = q("SELECT pseudonym_id FROM @extschema@.pseudonym_mapping WHERE pseudonym_id = ANY($1)
                 UNION SELECT pseudonym_id FROM @extschema@.pseudonym_forgotten WHERE pseudonym_id = ANY($1)")?;
    let found: Vec<String> = Spi::connect(|client| {
        let mut found = Vec::new();
        for r in client.select(&sql, None, &[asked.into()])? {
            found.extend(r.get::<String>(1)?);
        }
        Ok::<_, pgrx::spi::Error>(found)
    })?;
    out.extend(values.iter().copied().filter(|v| found.iter().any(|f| f == v)));
    Ok(out)
}

/// The token or encryption pseudonym of every original (NULL stays NULL; references
/// and `known` pseudonyms, see `known_pseudonyms`, are returned unchanged), recording
/// each new original's mapping once.
/// Two statements for the whole batch when nothing conflicts, three when a concurrent
/// transaction mapped some of the same originals.
pub fn pseudonymize_many(
    ring: &KeyRing,
    strategy: Strategy,
    originals: &[Option<&str>],
    known: &std::collections::HashSet<&str>,
) -> AuditResult<Vec<Option<String>>> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut wanted: Vec<Wanted<'_>> = Vec::new();
    for o in originals.iter().flatten().copied().filter(|o| !pseudonym::is_reference(o) && !known.contains(o)) {
        index.entry(o).or_insert_with(|| {
            wanted.push(Wanted { original: o, blinds: blind_indexes(ring, o), pseudonym: None });
            wanted.len() - 1
        });
    }
    if !wanted.is_empty() {
        let all: Vec<String> = wanted.iter().flat_map(|w| w.blinds.iter().cloned()).collect();
        resolve(&mut wanted, &mapped(strategy, all)?);
        let missing: Vec<&Wanted<'_>> = wanted.iter().filter(|w| w.pseudonym.is_none()).collect();
        if !missing.is_empty() {
            if crate::base::archive_role::replaying() {
                // An archive records no mapping of its own (its ids would collide with
                // the primary's, which arrive by replication): a value only the archive
                // still holds gets its hash pseudonym, which needs no mapping.
                for w in wanted.iter_mut().filter(|w| w.pseudonym.is_none()) {
                    w.pseudonym = Some(pseudonym::hash_pseudonym(ring.current(), w.original));
                }
            } else {
                let inserted = insert_new(ring, strategy, &missing)?;
                resolve(&mut wanted, &inserted);
                let lost: Vec<String> =
                    wanted.iter().filter(|w| w.pseudonym.is_none()).map(|w| w.blinds[0].clone()).collect();
                if !lost.is_empty() {
                    resolve(&mut wanted, &mapped(strategy, lost)?);
                }
            }
        }
    }
    originals
        .iter()
        .map(|o| match o {
            None => Ok(None),
            Some(o) => match index.get(o) {
                None => Ok(Some(o.to_string())),
                Some(&i) => wanted[i].pseudonym.clone().map(Some).ok_or_else(|| {
                    AuditError::internal("a mapping vanished after a concurrent insert")
                        .hint("Retry: the concurrent transaction that held it rolled back or forgot the subject.")
                }),
            },
        })
        .collect()
}

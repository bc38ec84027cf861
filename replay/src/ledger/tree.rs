//! Merkle tree maths exactly as RFC 6962 §2.1 / RFC 9162 §2.1 define it.
//!
//! - leaf hash `SHA-256(0x00 ‖ entry)`, node hash `SHA-256(0x01 ‖ left ‖ right)`, the root of the
//!   empty tree `SHA-256("")`;
//! - the tree over `n` leaves splits at `k`, the largest power of two *smaller than* `n`;
//! - leaf indexes are 0-based here; the ledger's sequence numbers are 1-based, so the record with
//!   sequence number `seq` is leaf `seq − 1` and a tree of size `n` holds records `1..=n`.
//!
//! [`Frontier`] keeps the O(log n) state needed to append leaves and read the current root (one
//! node per set bit of the size). Proof *generation* is described by the node ranges a proof
//! needs ([`inclusion_ranges`], [`consistency_ranges`]); [`inclusion_proof`] and
//! [`consistency_proof`] resolve them from the full list of leaf hashes at a cost of O(n) hashes
//! per proof, and the bundle writer resolves them while streaming, in O(log n) memory per proof.
//! Proof *verification* ([`verify_inclusion`], [`verify_consistency`]) follows RFC 9162's
//! bit-walking algorithms (§2.1.3.2, §2.1.4.2), deliberately independent of the generator.

use super::LedgerError;
use sha2::{Digest, Sha256};
use std::ops::Range;

/// A SHA-256 hash: a leaf, an interior node or a root.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ data)`: the hash of a leaf whose entry bytes are `data`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// `SHA-256("")`: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The root (RFC 6962 `MTH`) of the tree over `leaves`; O(n) hashes, O(log n) memory.
pub fn root(leaves: &[Hash]) -> Hash {
    let mut f = Frontier::new();
    for l in leaves {
        f.push(*l);
    }
    f.root()
}

/// A perfect subtree: level `level` (leaves are level 0), covering leaves
/// `[index·2^level, (index+1)·2^level)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId {
    /// Height above the leaves.
    pub level: u32,
    /// Position among the nodes of that level, from 0.
    pub index: u64,
}

impl NodeId {
    /// The leaves this node covers.
    pub fn range(&self) -> Range<u64> {
        let start = self.index << self.level;
        start..start + (1u64 << self.level)
    }

    /// The node covering exactly `range`, if `range` is a perfect, aligned subtree.
    pub fn of_range(range: &Range<u64>) -> Option<NodeId> {
        let len = range.end.checked_sub(range.start)?;
        if len == 0 || !len.is_power_of_two() || !range.start.is_multiple_of(len) {
            return None;
        }
        let level = len.trailing_zeros();
        Some(NodeId {
            level,
            index: range.start >> level,
        })
    }
}

/// The compact range `[0, size)` of an append-only tree: one perfect-subtree hash per set bit of
/// `size`, largest (leftmost) first. Enough to append a leaf and to compute the current root, and
/// small enough (≤ 64 hashes) to persist after every append so that it survives restarts
/// ([`Frontier::to_bytes`], or serde as `{"size": n, "nodes": ["hex", …]}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from its size and nodes (largest subtree first).
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Result<Self, LedgerError> {
        if nodes.len() != size.count_ones() as usize {
            return Err(LedgerError::TreeState(format!(
                "a tree of size {size} has {} frontier nodes, not {}",
                size.count_ones(),
                nodes.len()
            )));
        }
        Ok(Self { size, nodes })
    }

    /// Number of leaves appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The frontier nodes, largest (leftmost) subtree first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends a leaf hash. O(log n) hashes at worst, O(1) amortised.
    pub fn push(&mut self, leaf: Hash) {
        self.push_with(leaf, |_, _| {});
    }

    /// Appends a leaf hash, calling `on_node` for the leaf and for every perfect subtree the
    /// append completes (each exactly once over the life of the tree).
    pub fn push_with(&mut self, leaf: Hash, mut on_node: impl FnMut(NodeId, &Hash)) {
        let index = self.size;
        let mut hash = leaf;
        let mut level = 0u32;
        on_node(NodeId { level, index }, &hash);
        while (self.size >> level) & 1 == 1 {
            // A set bit means a completed subtree of this height waits on the left.
            let Some(left) = self.nodes.pop() else { break };
            hash = node_hash(&left, &hash);
            level += 1;
            on_node(
                NodeId {
                    level,
                    index: index >> level,
                },
                &hash,
            );
        }
        self.nodes.push(hash);
        self.size += 1;
    }

    /// The root of the tree of the leaves appended so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// The frontier node `id`, if it is one of the current frontier's nodes.
    pub(crate) fn node(&self, id: NodeId) -> Option<Hash> {
        if id.level >= 64 || (self.size >> id.level) & 1 == 0 {
            return None;
        }
        if id.index != (self.size >> id.level) - 1 {
            return None;
        }
        let above = if id.level == 63 {
            0
        } else {
            (self.size >> (id.level + 1)).count_ones()
        };
        self.nodes.get(above as usize).copied()
    }

    /// The RFC 6962 hash of leaves `[start, size)`, if `start` is a boundary between frontier
    /// nodes (which it is for every right-edge node of the current tree).
    pub(crate) fn suffix_hash(&self, start: u64) -> Option<Hash> {
        let mut pos = 0u64;
        let mut first = None;
        for (i, level) in (0..64u32)
            .rev()
            .filter(|l| (self.size >> l) & 1 == 1)
            .enumerate()
        {
            if pos == start {
                first = Some(i);
                break;
            }
            pos += 1u64 << level;
        }
        let first = first?;
        let nodes = self.nodes.get(first..)?;
        let mut iter = nodes.iter().rev();
        let last = iter.next()?;
        Some(iter.fold(*last, |acc, left| node_hash(left, &acc)))
    }

    /// Compact binary form: the size as 8 bytes big-endian, then each node's 32 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.nodes.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for n in &self.nodes {
            out.extend_from_slice(n);
        }
        out
    }

    /// Parses [`Frontier::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LedgerError> {
        let (size, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| LedgerError::TreeState("shorter than 8 bytes".into()))?;
        let size = u64::from_be_bytes(*size);
        if rest.len() % 32 != 0 {
            return Err(LedgerError::TreeState(
                "node bytes are not a multiple of 32".into(),
            ));
        }
        let nodes = rest
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Self::from_parts(size, nodes)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontierRepr {
    size: u64,
    nodes: Vec<String>,
}

impl serde::Serialize for Frontier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        FrontierRepr {
            size: self.size,
            nodes: self.nodes.iter().map(hex::encode).collect(),
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Frontier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let repr = FrontierRepr::deserialize(d)?;
        let nodes = repr
            .nodes
            .iter()
            .map(|h| parse_hex_hash(h).ok_or("frontier node is not 64 hex digits"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(serde::de::Error::custom)?;
        Frontier::from_parts(repr.size, nodes).map_err(serde::de::Error::custom)
    }
}

/// Parses 64 hex digits (either case) into a hash.
pub fn parse_hex_hash(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// The largest power of two smaller than `n` (`n` ≥ 2): RFC 6962's split point.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The node ranges of the inclusion proof of leaf `index` in the tree of `size` leaves, in proof
/// order (RFC 6962 `PATH`: the leaf's sibling first, the root's child last). Each range is a node
/// of that tree: a perfect aligned subtree, or (only for ranges ending at `size`) a right-edge
/// subtree.
pub fn inclusion_ranges(index: u64, size: u64) -> Result<Vec<Range<u64>>, LedgerError> {
    if index >= size {
        return Err(LedgerError::ProofRequest(format!(
            "leaf {index} is not in a tree of size {size}"
        )));
    }
    // Walk from the root down, collecting siblings; reverse to get leaf-first order.
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            out.push(lo + k..hi);
            hi = lo + k;
        } else {
            out.push(lo..lo + k);
            lo += k;
        }
    }
    out.reverse();
    Ok(out)
}

/// The node ranges of the consistency proof from the tree of `old` leaves to the tree of `new`
/// leaves, in proof order (RFC 6962 `PROOF`/`SUBPROOF`). Empty when `old == new`.
pub fn consistency_ranges(old: u64, new: u64) -> Result<Vec<Range<u64>>, LedgerError> {
    if old == 0 || old > new {
        return Err(LedgerError::ProofRequest(format!(
            "no consistency proof from size {old} to size {new}"
        )));
    }
    let mut out = Vec::new();
    let (mut m, mut lo, mut hi, mut whole) = (old, 0u64, new, true);
    loop {
        let n = hi - lo;
        if m == n {
            if !whole {
                out.push(lo..hi);
            }
            break;
        }
        let k = split(n);
        if m <= k {
            out.push(lo + k..hi);
            hi = lo + k;
        } else {
            out.push(lo..lo + k);
            m -= k;
            lo += k;
            whole = false;
        }
    }
    out.reverse();
    Ok(out)
}

/// The inclusion proof of leaf `index` in the tree over `leaves`. Costs O(n) hashes (every node
/// is recomputed from the leaves); a caller that keeps node hashes should resolve
/// [`inclusion_ranges`] itself.
pub fn inclusion_proof(index: u64, leaves: &[Hash]) -> Result<Vec<Hash>, LedgerError> {
    let ranges = inclusion_ranges(index, leaves.len() as u64)?;
    Ok(ranges.iter().map(|r| range_root(leaves, r)).collect())
}

/// The consistency proof from the tree over the first `old` of `leaves` to the tree over all of
/// them. Costs O(n) hashes, like [`inclusion_proof`].
pub fn consistency_proof(old: u64, leaves: &[Hash]) -> Result<Vec<Hash>, LedgerError> {
    let ranges = consistency_ranges(old, leaves.len() as u64)?;
    Ok(ranges.iter().map(|r| range_root(leaves, r)).collect())
}

fn range_root(leaves: &[Hash], r: &Range<u64>) -> Hash {
    // Ranges come from the functions above and lie inside `leaves`.
    let slice = leaves
        .get(r.start as usize..r.end as usize)
        .unwrap_or_default();
    root(slice)
}

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size, or the sizes are out of order.
    #[error("{0}")]
    OutOfRange(String),
    /// The proof has more hashes than the tree shape allows.
    #[error("proof has too many hashes")]
    TooLong,
    /// The proof has fewer hashes than the tree shape needs.
    #[error("proof has too few hashes")]
    TooShort,
    /// The proof recomputes a different root (or old root).
    #[error("proof does not lead to the expected root")]
    RootMismatch,
}

/// Recomputes the root from leaf `index`'s hash and its inclusion proof in a tree of `size`
/// (RFC 9162 §2.1.3.2, steps 1–5, without the final comparison).
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf index {index} is not below tree size {size}"
        )));
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::TooLong);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::TooShort);
    }
    Ok(r)
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves whose root is `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_inclusion_proof(index, size, leaf, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Checks that the tree of `old` leaves with root `old_root` is a prefix of the tree of `new`
/// leaves with root `new_root` (RFC 9162 §2.1.4.2). Equal sizes need an empty proof and equal
/// roots; `old` = 0 is rejected (nothing to prove).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old == 0 || old > new {
        return Err(ProofError::OutOfRange(format!(
            "no consistency proof from size {old} to size {new}"
        )));
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::TooLong);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let Some((first, rest)) = proof.split_first() else {
        return Err(ProofError::TooShort);
    };
    // Step 2: when `old` is a power of two the old root is itself a node of the new tree and is
    // not in the proof; start from it.
    let (start, rest) = if old.is_power_of_two() {
        (*old_root, proof)
    } else {
        (*first, rest)
    };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (start, start);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::TooLong);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::TooShort);
    }
    if fr == *old_root && sr == *new_root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

//! C2SP signed notes (`c2sp.org/signed-note`) with Ed25519 keys, and the standard text
//! encodings of keys:
//!
//! - verifier key (public, `vkey`): `<name>+<key id, 8 hex digits>+<base64(0x01 ‖ 32-byte
//!   public key)>`;
//! - signer key (secret, `skey`): `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ 32-byte seed)>`;
//! - key id = first 4 bytes, big-endian, of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`.
//!
//! A signed note is its text (ending in a newline), a blank line, then one or more lines
//! `— <key name> <base64(key id ‖ 64-byte Ed25519 signature over the text)>`.

use super::LedgerError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signature type byte of Ed25519 in signed notes.
pub const ALG_ED25519: u8 = 0x01;

/// Most signature lines accepted in one note (the spec asks for at least 16).
pub const MAX_SIGNATURES: usize = 64;

const SIG_PREFIX: &str = "\u{2014} ";

/// The key id of an Ed25519 key named `name`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, ALG_ED25519]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Whether `name` may name a key: non-empty, no Unicode white space, no `+`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// A public Ed25519 key with its name: verifies notes.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl std::fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl std::fmt::Display for VerifierKey {
    /// The `vkey` text form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut data = vec![ALG_ED25519];
        data.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(data))
    }
}

impl std::str::FromStr for VerifierKey {
    type Err = LedgerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn key_err(msg: impl Into<String>) -> LedgerError {
    LedgerError::Key(msg.into())
}

fn decode_key_data(b64: &str) -> Result<[u8; 32], LedgerError> {
    let data = B64
        .decode(b64)
        .map_err(|_| key_err("key data is not standard base64"))?;
    match data.split_first() {
        Some((&ALG_ED25519, rest)) => rest
            .try_into()
            .map_err(|_| key_err("an Ed25519 key is 32 bytes")),
        Some((alg, _)) => Err(key_err(format!(
            "signature type {alg:#04x} is not supported (only 0x01, Ed25519)"
        ))),
        None => Err(key_err("key data is empty")),
    }
}

fn parse_name_and_id<'a>(name: &'a str, id: &str) -> Result<(&'a str, u32), LedgerError> {
    if !valid_key_name(name) {
        return Err(key_err("key name must be non-empty, without spaces or '+'"));
    }
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(key_err("key id must be 8 hex digits"));
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| key_err("key id must be 8 hex digits"))?;
    Ok((name, id))
}

impl VerifierKey {
    /// Parses the `vkey` form `<name>+<key id>+<base64(0x01 ‖ public key)>`, checking that the
    /// key id matches the name and key.
    pub fn parse(vkey: &str) -> Result<Self, LedgerError> {
        let vkey = vkey.trim();
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(key_err("expected <name>+<key id>+<key data>"));
        };
        let (name, id) = parse_name_and_id(name, id)?;
        let bytes = decode_key_data(data)?;
        if key_id(name, &bytes) != id {
            return Err(key_err("key id does not match the key name and public key"));
        }
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| key_err("not a valid Ed25519 public key"))?;
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// Builds a verifier key from a name and a raw Ed25519 public key.
    pub fn from_public_key(name: &str, public_key: &[u8; 32]) -> Result<Self, LedgerError> {
        if !valid_key_name(name) {
            return Err(key_err("key name must be non-empty, without spaces or '+'"));
        }
        let key = VerifyingKey::from_bytes(public_key)
            .map_err(|_| key_err("not a valid Ed25519 public key"))?;
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, public_key),
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The raw public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Whether `signature` is this key's Ed25519 signature of `msg` (strict RFC 8032 checks).
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(msg, &sig).is_ok()
    }
}

/// A secret Ed25519 key with its name: signs notes. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// Parses the `skey` form `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ seed)>`, checking
    /// that the key id matches the name and the public key derived from the seed.
    pub fn parse(skey: &str) -> Result<Self, LedgerError> {
        let skey = skey.trim();
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| key_err("a signer key starts with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(key_err("expected PRIVATE+KEY+<name>+<key id>+<key data>"));
        };
        let (name, id) = parse_name_and_id(name, id)?;
        let seed = decode_key_data(data)?;
        let key = SigningKey::from_bytes(&seed);
        if key_id(name, key.verifying_key().as_bytes()) != id {
            return Err(key_err("key id does not match the key name and key"));
        }
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// A new random key named `name`, from the operating system's random number generator.
    pub fn generate(name: &str) -> Result<Self, LedgerError> {
        use rand::TryRng as _;
        if !valid_key_name(name) {
            return Err(key_err("key name must be non-empty, without spaces or '+'"));
        }
        let mut seed = [0u8; 32];
        rand::rngs::SysRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| LedgerError::Random(e.to_string()))?;
        Ok(Self::from_seed(name, &seed))
    }

    /// The key named `name` with the 32-byte Ed25519 seed `seed` (tests, deterministic setups).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        Self {
            name: name.to_owned(),
            id: key_id(name, key.verifying_key().as_bytes()),
            key,
        }
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// The secret `skey` text form. Keep it secret: anyone holding it can sign checkpoints.
    pub fn to_skey(&self) -> String {
        let mut data = vec![ALG_ED25519];
        data.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            B64.encode(data)
        )
    }

    /// This key's signature line for `text`.
    pub fn sign_line(&self, text: &str) -> NoteSignature {
        let sig = self.key.sign(text.as_bytes());
        NoteSignature {
            name: self.name.clone(),
            key_id: self.id,
            signature: sig.to_bytes().to_vec(),
        }
    }

    /// Signs `text` (which must be a valid note text) and returns the whole signed note.
    pub fn sign(&self, text: &str) -> Result<String, LedgerError> {
        check_text(text)?;
        let note = SignedNote {
            text: text.to_owned(),
            signatures: vec![self.sign_line(text)],
        };
        Ok(note.encode())
    }
}

/// A new key pair for `name`: `(skey, vkey)` in their text forms, for `audit keygen`.
pub fn generate_key_pair(name: &str) -> Result<(String, String), LedgerError> {
    let signer = NoteSigner::generate(name)?;
    Ok((signer.to_skey(), signer.verifier().to_string()))
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name on the line.
    pub name: String,
    /// The key id (first 4 decoded bytes).
    pub key_id: u32,
    /// The signature proper (the remaining bytes).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    fn encode(&self) -> String {
        let mut data = self.key_id.to_be_bytes().to_vec();
        data.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(data))
    }
}

/// A parsed signed note (signatures not yet checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The note text, ending in a newline.
    pub text: String,
    /// The signature lines.
    pub signatures: Vec<NoteSignature>,
}

fn note_err(msg: impl Into<String>) -> LedgerError {
    LedgerError::Note(msg.into())
}

fn check_text(text: &str) -> Result<(), LedgerError> {
    if !text.ends_with('\n') {
        return Err(note_err("note text must end in a newline"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(note_err("note text must not contain control characters"));
    }
    Ok(())
}

/// How a note's signatures stand against a set of trusted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteVerdict {
    /// At least one trusted key signed it, and no trusted key's signature failed. Holds the
    /// trusted keys that signed.
    Verified(Vec<VerifierKey>),
    /// A signature by a trusted key (same name and key id) did not verify.
    BadSignature {
        /// The key name.
        name: String,
        /// The key id.
        key_id: u32,
    },
    /// No signature is by a trusted key (the lines name other keys).
    UnknownKeys(Vec<(String, u32)>),
}

impl SignedNote {
    /// Parses a signed note: text ending in a newline, a blank line, signature lines.
    pub fn parse(msg: &str) -> Result<Self, LedgerError> {
        if msg.chars().any(|c| c < ' ' && c != '\n') {
            return Err(note_err("note contains control characters"));
        }
        let split = msg
            .rfind("\n\n")
            .ok_or_else(|| note_err("no blank line before the signatures"))?;
        let text = &msg[..split + 1];
        let sigs = &msg[split + 2..];
        if !sigs.ends_with('\n') {
            return Err(note_err("signature lines must end in a newline"));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(note_err("too many signatures"));
            }
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or_else(|| note_err("a signature line starts with an em dash and a space"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| note_err("a signature line is '— <name> <signature>'"))?;
            if !valid_key_name(name) {
                return Err(note_err("invalid key name in a signature line"));
            }
            let data = B64
                .decode(b64)
                .map_err(|_| note_err("signature is not standard base64"))?;
            if data.len() < 5 {
                return Err(note_err("signature is too short"));
            }
            let (id, sig) = data.split_at(4);
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
                signature: sig.to_vec(),
            });
        }
        if signatures.is_empty() {
            return Err(note_err("no signatures"));
        }
        check_text(text)?;
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note in its text form.
    pub fn encode(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.encode());
        }
        out
    }

    /// Checks the signatures against `trusted` keys as the signed-note spec says: signatures by
    /// unknown keys (name *and* key id must match) are ignored; a failing signature by a known
    /// key rejects the note; at least one known key must have signed.
    pub fn check(&self, trusted: &[VerifierKey]) -> NoteVerdict {
        let mut ok = Vec::new();
        for s in &self.signatures {
            let Some(key) = trusted
                .iter()
                .find(|k| k.name == s.name && k.id == s.key_id)
            else {
                continue;
            };
            if !key.verify(self.text.as_bytes(), &s.signature) {
                return NoteVerdict::BadSignature {
                    name: s.name.clone(),
                    key_id: s.key_id,
                };
            }
            ok.push(key.clone());
        }
        if ok.is_empty() {
            NoteVerdict::UnknownKeys(
                self.signatures
                    .iter()
                    .map(|s| (s.name.clone(), s.key_id))
                    .collect(),
            )
        } else {
            NoteVerdict::Verified(ok)
        }
    }

    /// Parses `msg` and returns its text if a trusted key signed it ([`SignedNote::check`]).
    pub fn open(msg: &str, trusted: &[VerifierKey]) -> Result<String, LedgerError> {
        let note = Self::parse(msg)?;
        match note.check(trusted) {
            NoteVerdict::Verified(_) => Ok(note.text),
            NoteVerdict::BadSignature { name, key_id } => Err(note_err(format!(
                "signature by {name}+{key_id:08x} does not verify"
            ))),
            NoteVerdict::UnknownKeys(keys) => Err(note_err(format!(
                "not signed by a trusted key (signed by {})",
                keys.iter()
                    .map(|(n, id)| format!("{n}+{id:08x}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

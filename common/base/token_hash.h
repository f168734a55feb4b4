// Device tokens at rest: a salted SHA-256 of the token, written "sha256$<salt-hex>$<hash-hex>"
// (the server's devices file, docs/operations.md). Tokens are random secrets of at least 8
// characters (streamdistill-admin makes 24 random bytes), not passwords, so one salted hash
// is enough: a slow key-derivation function would only let a client make the server spend
// CPU on every hello. The salt keeps equal tokens from having equal hashes.
#pragma once

#include <string>
#include <string_view>

#include "common/base/status.h"

namespace sd {

struct TokenHash {
  std::string salt;    // raw bytes
  std::string digest;  // raw SHA-256 of salt + token, 32 bytes
};

// The SHA-256 of `data`, 32 raw bytes (OpenSSL's libcrypto).
std::string Sha256(std::string_view data);
// `n` bytes from the OS's cryptographic generator; Internal when it fails.
StatusOr<std::string> RandomBytes(size_t n);
std::string HexEncode(std::string_view bytes);  // lower case

// A fresh 16-byte salt and the hash of `token` under it.
StatusOr<TokenHash> HashToken(std::string_view token);
TokenHash HashTokenWithSalt(std::string_view token, std::string salt);
// True when `token` hashes to `hash.digest`. Takes the same time whichever bytes differ.
bool TokenMatches(const TokenHash& hash, std::string_view token);

// "sha256$<salt-hex>$<hash-hex>" and back; InvalidArgument names what is wrong (never the
// hash itself, which goes into no log line).
std::string FormatTokenHash(const TokenHash& hash);
StatusOr<TokenHash> ParseTokenHash(std::string_view text);

}  // namespace sd

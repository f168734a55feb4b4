#include "common/base/token_hash.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

namespace sd {
namespace {

constexpr size_t kSaltBytes = 16;
constexpr size_t kDigestBytes = 32;
constexpr std::string_view kScheme = "sha256$";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool HexDecode(std::string_view hex, std::string* out) {
  if (hex.size() % 2 != 0) return false;
  out->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = HexValue(hex[i]), lo = HexValue(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

}  // namespace

std::string Sha256(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

StatusOr<std::string> RandomBytes(size_t n) {
  std::string bytes(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(n)) != 1)
    return Status::Internal("the system's random generator failed");
  return bytes;
}

std::string HexEncode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    hex.push_back(kDigits[b >> 4]);
    hex.push_back(kDigits[b & 15]);
  }
  return hex;
}

TokenHash HashTokenWithSalt(std::string_view token, std::string salt) {
  TokenHash hash;
  hash.digest = Sha256(salt + std::string(token));
  hash.salt = std::move(salt);
  return hash;
}

StatusOr<TokenHash> HashToken(std::string_view token) {
  SD_ASSIGN_OR_RETURN(std::string salt, RandomBytes(kSaltBytes));
  return HashTokenWithSalt(token, std::move(salt));
}

bool TokenMatches(const TokenHash& hash, std::string_view token) {
  const std::string digest = HashTokenWithSalt(token, hash.salt).digest;
  return digest.size() == hash.digest.size() && CRYPTO_memcmp(digest.data(), hash.digest.data(), digest.size()) == 0;
}

std::string FormatTokenHash(const TokenHash& hash) {
  return std::string(kScheme) + HexEncode(hash.salt) + "$" + HexEncode(hash.digest);
}

StatusOr<TokenHash> ParseTokenHash(std::string_view text) {
  if (text.substr(0, kScheme.size()) != kScheme)
    return Status::InvalidArgument("a token hash must look like sha256$<salt-hex>$<hash-hex>");
  text.remove_prefix(kScheme.size());
  const size_t dollar = text.find('$');
  TokenHash hash;
  if (dollar == std::string_view::npos || !HexDecode(text.substr(0, dollar), &hash.salt) || hash.salt.empty())
    return Status::InvalidArgument("the salt of a token hash must be non-empty hex");
  if (!HexDecode(text.substr(dollar + 1), &hash.digest) || hash.digest.size() != kDigestBytes)
    return Status::InvalidArgument("the hash of a token hash must be 64 hex digits (SHA-256)");
  return hash;
}

}  // namespace sd

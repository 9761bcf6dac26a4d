// Test messages shared by client.mjs and server.mjs; mirrors tests/interop/test_node_ws.py.
import { randomBytes } from "node:crypto";

// Deterministic text of `size` UTF-16 code units: compressible, with 2- and
// 3-byte UTF-8 characters and one astral character (a surrogate pair) first.
export function makeText(size) {
  const words = ["héllo", "wörld", "☃", "ws13", "deflate", "Ω", "interop", "ünïcode"];
  const parts = ["𝄞 "];
  let length = 3;
  let seed = size | 1;
  while (length < size) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    seed >>>= 0;
    const word = words[seed % words.length] + " ";
    parts.push(word);
    length += word.length;
  }
  return parts.join("").slice(0, size);
}

export function patternBytes(size) {
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 7) % 251;
  return bytes;
}

// [kind, message] pairs for each size: compressible text, random and patterned binary.
export function messages(sizes) {
  const result = [];
  for (const size of sizes) {
    result.push(["text", size, makeText(size)]);
    result.push(["random binary", size, randomBytes(size)]);
    result.push(["pattern binary", size, patternBytes(size)]);
  }
  return result;
}

export function print(object) {
  process.stdout.write(JSON.stringify(object) + "\n");
}

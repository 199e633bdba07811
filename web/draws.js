// The seeded random draws of the sampler: numpy's PCG64, as handwriting/draws.py describes.
//
// Line i of a text written with seed s reads the stream numpy.random.default_rng([s, i]),
// four doubles per pen step: u0, u1 (uniforms: the mixture component, the end of stroke) and
// u2, u3, whose Box-Muller transform gives the two standard normals of the offset,
//
//     normals = sqrt(-2 log(1 - u2)) * (cos(2 pi u3), sin(2 pi u3)).
//
// numpy's SeedSequence hash (32-bit words) seeds the 128-bit PCG64 generator (XSL-RR output);
// a double is the top 53 bits of a 64-bit output over 2**53. The 128-bit arithmetic uses
// BigInt. A classic script (the worker loads it with importScripts): it defines
// `self.HandwritingDraws`, and `module.exports` under Node.
//
// References: M. E. O'Neill, "PCG: A Family of Simple Fast Space-Efficient Statistically Good
// Algorithms for Random Number Generation", 2014; numpy.random.SeedSequence, PCG64.

(function (scope) {
  "use strict";

  const MASK32 = 0xffffffffn;
  const MASK64 = (1n << 64n) - 1n;
  const MASK128 = (1n << 128n) - 1n;
  // numpy.random.SeedSequence's hash constants (a pool of 4 words, 32-bit arithmetic).
  const POOL_SIZE = 4;
  const INIT_A = 0x43b0d7e5n;
  const MULT_A = 0x931e8875n;
  const INIT_B = 0x8b51f9ddn;
  const MULT_B = 0x58f38dedn;
  const MIX_MULT_L = 0xca01f9ddn;
  const MIX_MULT_R = 0x4973f715n;
  const XSHIFT = 16n;
  // PCG64's 128-bit LCG multiplier.
  const PCG_MULTIPLIER = (2549297995355413924n << 64n) | 4865540595714422341n;
  const SEED_LIMIT = 2 ** 32; // seeds and line indices are 32-bit words of the entropy
  const DRAWS_PER_STEP = 4;

  function checkWord(value, name) {
    if (!Number.isInteger(value) || value < 0 || value >= SEED_LIMIT) {
      throw new RangeError(`${name} must be an integer in [0, 2**32), received ${value}`);
    }
    return BigInt(value);
  }

  // The 128-bit state and increment of numpy.random.default_rng([seed, line]).
  function seedStream(seed, line) {
    const entropy = [checkWord(seed, "seed"), checkWord(line, "line")];
    let hashConst = INIT_A;
    const hashmix = (value) => {
      value ^= hashConst;
      hashConst = (hashConst * MULT_A) & MASK32;
      value = (value * hashConst) & MASK32;
      return value ^ (value >> XSHIFT);
    };
    const mix = (x, y) => {
      let result = ((x * MIX_MULT_L) & MASK32) - ((y * MIX_MULT_R) & MASK32);
      result &= MASK32; // the difference mod 2**32
      return result ^ (result >> XSHIFT);
    };
    const pool = [];
    for (let i = 0; i < POOL_SIZE; i++) pool.push(hashmix(i < entropy.length ? entropy[i] : 0n));
    for (let source = 0; source < POOL_SIZE; source++) {
      for (let target = 0; target < POOL_SIZE; target++) {
        if (source !== target) pool[target] = mix(pool[target], hashmix(pool[source]));
      }
    }
    // SeedSequence.generate_state(4, uint64): eight 32-bit words, read as four little-endian
    // 64-bit words.
    hashConst = INIT_B;
    const words = [];
    for (let i = 0; i < 2 * POOL_SIZE; i++) {
      let value = pool[i % POOL_SIZE] ^ hashConst;
      hashConst = (hashConst * MULT_B) & MASK32;
      value = (value * hashConst) & MASK32;
      words.push(value ^ (value >> XSHIFT));
    }
    const seedWords = [0, 1, 2, 3].map((k) => words[2 * k] | (words[2 * k + 1] << 32n));
    // PCG64 seeding: initstate = (w0, w1), initseq = (w2, w3) as (high, low);
    // inc = initseq << 1 | 1; state = 0; step; state += initstate; step.
    const initState = (seedWords[0] << 64n) | seedWords[1];
    const initSeq = (seedWords[2] << 64n) | seedWords[3];
    const increment = ((initSeq << 1n) | 1n) & MASK128;
    let state = increment;
    state = (state + initState) & MASK128;
    state = (state * PCG_MULTIPLIER + increment) & MASK128;
    return { state, increment };
  }

  // The next double in [0, 1) of `stream` (advanced in place), as numpy's random().
  function nextDouble(stream) {
    stream.state = (stream.state * PCG_MULTIPLIER + stream.increment) & MASK128;
    const high = stream.state >> 64n;
    const folded = (high ^ stream.state) & MASK64;
    const rotation = high >> 58n;
    const rotated = ((folded >> rotation) | (folded << ((64n - rotation) & 63n))) & MASK64;
    return Number(rotated >> 11n) / 9007199254740992; // 2**53
  }

  // `steps` steps of draws of line `line`: a Float32Array of steps * 4 numbers, per step
  // (u0, u1, normal x, normal y), computed in double precision and rounded once to float32.
  function lineDraws(seed, line, steps) {
    const stream = seedStream(seed, line);
    const out = new Float32Array(steps * DRAWS_PER_STEP);
    for (let t = 0; t < steps; t++) {
      const u0 = nextDouble(stream);
      const u1 = nextDouble(stream);
      const u2 = nextDouble(stream);
      const u3 = nextDouble(stream);
      const radius = Math.sqrt(-2 * Math.log(1 - u2));
      const angle = 2 * Math.PI * u3;
      out.set([u0, u1, radius * Math.cos(angle), radius * Math.sin(angle)], t * DRAWS_PER_STEP);
    }
    return out;
  }

  const api = { seedStream, nextDouble, lineDraws, DRAWS_PER_STEP, SEED_LIMIT };
  scope.HandwritingDraws = api;
  if (typeof module === "object" && module.exports) module.exports = api;
})(typeof self !== "undefined" ? self : globalThis);

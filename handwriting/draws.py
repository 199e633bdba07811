"""The seeded random draws of every sampler: numpy's PCG64, in numpy and in TensorFlow ops.

Sampling a point takes four numbers per line and step (`mixture.sample_point` takes them as
inputs): two uniforms (the mixture component, the end of stroke) and two standard normals (the
offset). They come from one stream per line: line `i` of a batch sampled with seed `s` reads
`numpy.random.default_rng([s, i])` (a PCG64 generator), four `random()` doubles per step,

    uniforms = (u0, u1)
    normals  = sqrt(-2 log(1 - u2)) * (cos(2 pi u3), sin(2 pi u3))      (Box-Muller)

so a line's strokes depend on the seed and its index, not on which other lines share the batch.
The Python sampler and the exported SavedModel run the same generator as TensorFlow ops
(`seed_streams`, `next_draws`: the SeedSequence hash and the 128-bit PCG64 step in uint64
arithmetic), the LiteRT runner calls numpy itself, and the tests hold the TF streams equal to
numpy's bit for bit, so one seed gives the same strokes everywhere.

Seeds and line indices are integers in [0, 2**32).

References:
    M. E. O'Neill, "PCG: A Family of Simple Fast Space-Efficient Statistically Good
    Algorithms for Random Number Generation", 2014 (PCG64 = XSL-RR 128/64).
    numpy.random.SeedSequence and numpy.random.PCG64 (numpy >= 1.17).
"""

import math

import numpy as np
import tensorflow as tf

SEED_LIMIT = 2**32  # seeds (and line indices) are 32-bit words of the SeedSequence entropy
DRAWS_PER_STEP = 4  # doubles read from a line's stream per pen step

_MASK32 = 0xFFFFFFFF
# numpy.random.SeedSequence's hash constants (pool of 4 words, 32-bit arithmetic).
_POOL_SIZE = 4
_INIT_A = 0x43B0D7E5
_MULT_A = 0x931E8875
_INIT_B = 0x8B51F9DD
_MULT_B = 0x58F38DED
_MIX_MULT_L = 0xCA01F9DD
_MIX_MULT_R = 0x4973F715
_XSHIFT = 16
# PCG64's 128-bit LCG multiplier, high and low 64-bit halves.
_PCG_MULT_HIGH = 2549297995355413924
_PCG_MULT_LOW = 4865540595714422341


def check_seed(seed) -> int:
    """Returns `seed` as an int after checking it is in [0, 2**32)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"`seed` must be an int, received {type(seed).__name__}")
    if not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(f"`seed` must be in [0, 2**32), received {seed}")
    return int(seed)


# ---------------------------------------------------------------------------------------------
# numpy


def numpy_streams(seed, lines: int) -> list:
    """Returns the generators of `lines` lines: `numpy.random.default_rng([seed, i])`."""
    seed = check_seed(seed)
    return [np.random.default_rng([seed, i]) for i in range(lines)]


def numpy_next_draws(streams):
    """Reads one step's draws from every stream.

    Returns:
        `(uniforms, normals)`, each `(B, 2)` float32.
    """
    raw = np.stack([s.random(DRAWS_PER_STEP) for s in streams])  # [B, 4] float64
    return _split(raw, np)


def _split(raw, ops):
    radius = ops.sqrt(-2.0 * ops.log(1.0 - raw[:, 2]))
    angle = (2.0 * math.pi) * raw[:, 3]
    if ops is np:
        uniforms = raw[:, :2].astype(np.float32)
        normals = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
        return uniforms, normals.astype(np.float32)
    uniforms = tf.cast(raw[:, :2], tf.float32)
    normals = tf.stack([radius * tf.cos(angle), radius * tf.sin(angle)], axis=1)
    return uniforms, tf.cast(normals, tf.float32)


# ---------------------------------------------------------------------------------------------
# TensorFlow: the same streams as plain ops (no random ops), for graphs and SavedModels.


def seed_streams(seed, lines):
    """Seeds `lines` PCG64 streams as `numpy.random.default_rng([seed, i])` does.

    Args:
        seed: scalar integer tensor (or int) in [0, 2**32).
        lines: scalar int32, the number of lines B.

    Returns:
        `(B, 4)` uint64: the 128-bit state and increment of each line's generator as
        `(state_high, state_low, increment_high, increment_low)`.
    """
    seed = tf.cast(seed, tf.int64)
    seed = tf.cast(tf.reshape(seed, []), tf.uint64)
    index = tf.cast(tf.range(tf.cast(lines, tf.int64)), tf.uint64)  # [B]
    entropy = [tf.fill(tf.shape(index), seed), index]  # the words [seed, i]
    # SeedSequence.mix_entropy: the hash constant evolves identically for every line, so it
    # stays a Python int; only the values are tensors.
    hash_const = _INIT_A

    def hashmix(value):
        nonlocal hash_const
        value = tf.bitwise.bitwise_xor(value, _u64(hash_const))
        hash_const = (hash_const * _MULT_A) & _MASK32
        value = _mul32(value, _u64(hash_const))
        return tf.bitwise.bitwise_xor(value, _shr(value, _XSHIFT))

    def mix(x, y):
        result = (_mul32(x, _u64(_MIX_MULT_L)) - _mul32(y, _u64(_MIX_MULT_R))) & _u64(_MASK32)
        return tf.bitwise.bitwise_xor(result, _shr(result, _XSHIFT))

    zero = tf.zeros_like(index)
    pool = [hashmix(entropy[i] if i < len(entropy) else zero) for i in range(_POOL_SIZE)]
    for source in range(_POOL_SIZE):
        for target in range(_POOL_SIZE):
            if source != target:
                pool[target] = mix(pool[target], hashmix(pool[source]))
    # SeedSequence.generate_state(4, uint64): eight 32-bit words, read as four little-endian
    # 64-bit words.
    hash_const = _INIT_B
    words = []
    for i in range(2 * _POOL_SIZE):
        value = tf.bitwise.bitwise_xor(pool[i % _POOL_SIZE], _u64(hash_const))
        hash_const = (hash_const * _MULT_B) & _MASK32
        value = _mul32(value, _u64(hash_const))
        words.append(tf.bitwise.bitwise_xor(value, _shr(value, _XSHIFT)))
    seed_words = [tf.bitwise.bitwise_or(words[2 * k], _shl(words[2 * k + 1], 32)) for k in range(4)]
    # PCG64 seeding: initstate = (w0, w1), initseq = (w2, w3) as (high, low);
    # inc = initseq << 1 | 1; state = 0; step; state += initstate; step.
    increment_high = tf.bitwise.bitwise_or(_shl(seed_words[2], 1), _shr(seed_words[3], 63))
    increment_low = tf.bitwise.bitwise_or(_shl(seed_words[3], 1), _u64(1))
    state_high, state_low = increment_high, increment_low  # 0 * multiplier + increment
    state_high, state_low = _add128(state_high, state_low, seed_words[0], seed_words[1])
    state_high, state_low = _step(state_high, state_low, increment_high, increment_low)
    return tf.stack([state_high, state_low, increment_high, increment_low], axis=1)


def next_draws(streams):
    """Reads one step's draws from every stream.

    Args:
        streams: `(B, 4)` uint64 from `seed_streams` (or a previous call).

    Returns:
        `(streams, uniforms, normals)`: the advanced streams, and `(B, 2)` float32 each.
    """
    state_high, state_low = streams[:, 0], streams[:, 1]
    increment_high, increment_low = streams[:, 2], streams[:, 3]
    doubles = []
    for _ in range(DRAWS_PER_STEP):
        state_high, state_low = _step(state_high, state_low, increment_high, increment_low)
        # XSL-RR output: (high ^ low) rotated right by the top 6 bits of the state.
        folded = tf.bitwise.bitwise_xor(state_high, state_low)
        rotation = _shr(state_high, 58)
        rotated = tf.bitwise.bitwise_or(
            tf.bitwise.right_shift(folded, rotation),
            tf.bitwise.left_shift(folded, (_u64(64) - rotation) & _u64(63)),
        )
        # numpy's next_double: the top 53 bits over 2**53.
        doubles.append(tf.cast(_shr(rotated, 11), tf.float64) * (1.0 / 9007199254740992.0))
    raw = tf.stack(doubles, axis=1)  # [B, 4] float64
    uniforms, normals = _split(raw, tf.math)
    streams = tf.stack([state_high, state_low, increment_high, increment_low], axis=1)
    return streams, uniforms, normals


def _u64(value):
    return tf.constant(value, tf.uint64)


def _shr(value, bits):
    return tf.bitwise.right_shift(value, _u64(bits) if isinstance(bits, int) else bits)


def _shl(value, bits):
    return tf.bitwise.left_shift(value, _u64(bits))


def _mul32(a, b):
    """(a * b) mod 2**32 for a, b < 2**32 held in uint64 (the product fits exactly)."""
    return (a * b) & _u64(_MASK32)


def _mul_high64(a, b):
    """The high 64 bits of the 128-bit product of two uint64 tensors."""
    mask = _u64(_MASK32)
    a_low, a_high = a & mask, _shr(a, 32)
    b_low, b_high = b & mask, _shr(b, 32)
    low_low = a_low * b_low
    low_high = a_low * b_high
    high_low = a_high * b_low
    middle = _shr(low_low, 32) + (low_high & mask) + (high_low & mask)
    return a_high * b_high + _shr(low_high, 32) + _shr(high_low, 32) + _shr(middle, 32)


def _add128(a_high, a_low, b_high, b_low):
    low = a_low + b_low
    carry = tf.cast(low < a_low, tf.uint64)
    return a_high + b_high + carry, low


def _step(state_high, state_low, increment_high, increment_low):
    """One LCG step, state <- state * multiplier + increment (mod 2**128)."""
    mult_high, mult_low = _u64(_PCG_MULT_HIGH), _u64(_PCG_MULT_LOW)
    product_low = state_low * mult_low
    product_high = _mul_high64(state_low, mult_low) + state_low * mult_high + state_high * mult_low
    return _add128(product_high, product_low, increment_high, increment_low)

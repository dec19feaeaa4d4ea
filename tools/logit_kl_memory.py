"""Compiled scratch memory of the logit KL and its gradient: chunked (ours) vs plain.

    python tools/logit_kl_memory.py --batch 8 --length 114 --vocab 32128

Compiles (does not run) value-and-gradient of `miniend_jax.distill.losses.logit_kl` and of
the plain formula on abstract inputs, and prints XLA's temporary-buffer size for each on
the default backend, with one float32 [batch, length, vocab] copy for scale.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from miniend_jax.distill import losses


def plain_logit_kl(teacher, student, weights, temperature=1.0):
  log_p = jax.nn.log_softmax(teacher.astype(jnp.float32) / temperature, axis=-1)
  log_q = jax.nn.log_softmax(student.astype(jnp.float32) / temperature, axis=-1)
  kl = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
  return temperature ** 2 * jnp.sum(kl * weights) / jnp.sum(weights)


def scratch_bytes(fn, *shapes) -> int:
  compiled = jax.jit(jax.value_and_grad(fn, argnums=1)).lower(*shapes).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--length", type=int, default=114)
  parser.add_argument("--vocab", type=int, default=32128)
  parser.add_argument("--chunk_length", type=int, default=losses.DEFAULT_CHUNK_LENGTH)
  parser.add_argument("--teacher_dtype", default="float32")
  args = parser.parse_args()
  shape = (args.batch, args.length, args.vocab)
  teacher = jax.ShapeDtypeStruct(shape, jnp.dtype(args.teacher_dtype))
  student = jax.ShapeDtypeStruct(shape, jnp.float32)
  weights = jax.ShapeDtypeStruct(shape[:2], jnp.float32)
  copy = 4 * args.batch * args.length * args.vocab
  plain = scratch_bytes(plain_logit_kl, teacher, student, weights)
  ours = scratch_bytes(
      lambda t, s, w: losses.logit_kl(t, s, w, chunk_length=args.chunk_length),
      teacher, student, weights)
  print(f"backend {jax.default_backend()}, logits {shape}, teacher {args.teacher_dtype}, "
        f"one float32 copy {copy / 2**20:.1f} MiB")
  print(f"plain   scratch {plain / 2**20:9.1f} MiB = {plain / copy:.2f} copies")
  print(f"chunked scratch {ours / 2**20:9.1f} MiB = {ours / copy:.2f} copies "
        f"(chunk_length {args.chunk_length})")
  print(f"ratio plain / chunked: {plain / max(ours, 1):.1f}x")


if __name__ == "__main__":
  main()

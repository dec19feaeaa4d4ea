"""Analytic forward FLOPs: a hand count for a tiny model, and XLA's count of the compiled
forward pass (which adds the element-wise work the analytic count leaves out)."""

import jax
import jax.numpy as jnp
import pytest

from miniend_jax.model import Transformer, init_params, preset
from miniend_jax.model.flops import forward_flops, training_flops
from miniend_jax.taps import Tap


def test_tiny_model_matches_a_hand_count():
  # tiny: emb 32, 4 heads x 8 = 32 wide attention, gated MLP 64, 2 + 2 layers, vocab 128.
  config = preset("tiny")
  flops = forward_flops(config, inputs_length=10, targets_length=4)
  # Encoder layer, per token: q, k, v, out 4 * 2*32*32 = 8192; Q.K^T and P.V over 10
  # keys: 2 * 2*10*32 = 1280; MLP wi_0, wi_1, wo: 3 * 2*32*64 = 12288 -> 21760 x 10 tokens.
  assert flops.encoder == 2 * 10 * 21760
  # Decoder layer: self-attention 8192 + 2*2*4*32 = 512 per target token; cross q and out
  # 4096 per target token, k and v 4096 per input token; cross products 2*2*10*32 = 1280
  # per target token; MLP 12288 per target token.
  per_layer = 4 * (8192 + 512 + 4096 + 1280 + 12288) + 10 * 4096
  assert flops.decoder == 2 * per_layer
  assert flops.logits == 2 * 4 * 32 * 128
  assert flops.total == flops.encoder + flops.decoder + flops.logits
  assert flops.per_token == pytest.approx(flops.total / 14)
  assert training_flops(config, inputs_length=10, targets_length=4) == 3 * flops.total


# Parts of one tiny layer at inputs 10, targets 4 (per example; see the hand count above).
ENCODER_LAYER = 10 * 21760
Q_PROJECTION = 2 * 32 * 32  # per token
DECODER_SELF_ATTENTION = 4 * (8192 + 512)
DECODER_LAYER = 4 * (8192 + 512 + 4096 + 1280 + 12288) + 10 * 4096


@pytest.mark.parametrize("taps,encoder,decoder,logits", [
    # The encoder's top queries: layer 0 in full plus one projection; no decoder.
    ([Tap("encoder", -1, "self_attention_q")], ENCODER_LAYER + 10 * Q_PROJECTION, 0, 0),
    # Q.K^T of layer 0 (probabilities): q and k projections and the product.
    ([Tap("encoder", 0, "self_attention_probs")], 2 * 10 * Q_PROJECTION + 2 * 10 * 10 * 32,
     0, 0),
    # Decoder layer 0's self-attention values need nothing else, not even the encoder.
    ([Tap("decoder", 0, "self_attention_v")], 0, 4 * Q_PROJECTION, 0),
    # Cross-attention keys of decoder layer 1 need the encoder and one projection only.
    ([Tap("decoder", 1, "cross_attention_k")], 2 * ENCODER_LAYER, 10 * Q_PROJECTION, 0),
    # Cross queries of the top layer: layer 0 in full, layer 1's self-attention, one q.
    ([Tap("decoder", -1, "cross_attention_q")], 2 * ENCODER_LAYER,
     DECODER_LAYER + DECODER_SELF_ATTENTION + 4 * Q_PROJECTION, 0),
    # The top hidden state or the factored output layer: everything but the output product.
    ([Tap("decoder", -1, "hidden")], 2 * ENCODER_LAYER, 2 * DECODER_LAYER, 0),
    ([Tap("decoder", -1, "output_layer")], 2 * ENCODER_LAYER, 2 * DECODER_LAYER, 0),
    ([Tap("decoder", -1, "logits")], 2 * ENCODER_LAYER, 2 * DECODER_LAYER, 2 * 4 * 32 * 128),
])
def test_tapped_forward_counts_only_what_the_taps_need(taps, encoder, decoder, logits):
  flops = forward_flops(preset("tiny"), inputs_length=10, targets_length=4, taps=taps)
  assert (flops.encoder, flops.decoder, flops.logits) == (encoder, decoder, logits)


@pytest.mark.parametrize("config,lower", [
    (preset("tiny"), 0.85),
    (preset("tiny", mlp_activations=("relu",), logits_via_embedding=True), 0.85),
    (preset("t5_1_1_small", vocab_size=2176, emb_dim=128, num_heads=4, head_dim=32,
            mlp_dim=384, num_encoder_layers=3, num_decoder_layers=3), 0.97),
])
def test_analytic_count_is_the_bulk_of_what_xla_counts(config, lower):
  """Matrix multiplications are all of the analytic count and nearly all of XLA's: the
  rest (norms, softmax, activations) shrinks as the width grows."""
  batch, inputs, targets = 2, 64, 16
  params = jax.eval_shape(lambda: init_params(config, jax.random.key(0)))
  forward = jax.jit(lambda p, e, d: Transformer(config).apply({"params": p}, e, d, d))
  compiled = forward.lower(params, jnp.ones((batch, inputs), jnp.int32),
                           jnp.ones((batch, targets), jnp.int32)).compile()
  cost = compiled.cost_analysis()
  xla = (cost[0] if isinstance(cost, list) else cost)["flops"]
  ours = batch * forward_flops(config, inputs_length=inputs, targets_length=targets).total
  assert lower <= ours / xla <= 1.0

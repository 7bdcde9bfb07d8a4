/* tests/testmodels.h: the models the initializer tests share.
 *   TEST_SMALL_VIT  8x8x1 images, d 32, depth 2: q (32 x 32) and fc1 (64 x 32) for rank and shape checks
 *   TEST_TINY_VIT   configs/backbones/tiny_vit.yaml with PyTorch's default init (configs/pretrain/tiny_vit.yaml)
 *   TEST_QV, TEST_FC  target patterns: q and v thirds of every qkv; fc1 and fc2 of every block
 * test_build_adapted() builds a model (seed 1), freezes it and attaches adapters of one kind, rank r,
 * alpha 2r, seed 3. */
#ifndef TESTS_TESTMODELS_H
#define TESTS_TESTMODELS_H
#include "core/model.h"

extern const ModelConfig TEST_SMALL_VIT, TEST_TINY_VIT;
extern const char *const TEST_QV[2], *const TEST_FC[2];

void test_build_adapted(Model *m, AdapterSet *ad, const ModelConfig *mc, const char *const *pats, int np,
                        const AdapterKind *kind, int r);
#endif

/* core/cnn.h: small CNN backbones for conv adapters: a CIFAR-style ResNet (BasicBlocks) and a VGG, built
 * from a small config as a flat table of layers (conv2d, batchnorm, relu, add, maxpool, global average
 * pool, linear) with explicit forward and backward.
 *
 * ResNet: conv1 3x3 (in_ch -> width) - bn1 - relu; stages of BasicBlocks
 *         (conv1 3x3 - bn1 - relu - conv2 3x3 - bn2, + shortcut, relu; the shortcut is downsample =
 *         conv 1x1 stride 2 + bn when the shape changes, else the identity); global average pool; fc.
 * VGG:    per stage [conv 3x3 pad 1 - bn - relu] x blocks_per_stage, then maxpool 2x2; global average pool;
 *         classifier (one linear layer).
 * Stage s (1-based) has width * 2^(s-1) channels; every stage but the first halves H and W (ResNet: its
 * first block's stride-2 conv1 and downsample), VGG halves after every stage (torchvision places a maxpool
 * after each stage).
 *
 * Parameter names follow torchvision, so its state dicts map directly:
 *   ResNet: conv1.weight, bn1.{weight,bias,running_mean,running_var}, layer1.0.conv1.weight, layer1.0.bn1.*,
 *           layer1.0.conv2.weight, layer1.0.bn2.*, layer2.0.downsample.0.weight, layer2.0.downsample.1.*,
 *           fc.weight, fc.bias. With batchnorm = 0 the bn entries vanish and every conv gets a .bias.
 *   VGG:    features.<i>.{weight,bias} for conv i, features.<i+1>.{weight,bias,running_mean,running_var} for
 *           its bn, i counting modules (conv, bn, relu, maxpool) as torchvision's vgg*_bn/vgg* do; convs
 *           always carry a bias (as torchvision's); classifier.weight, classifier.bias.
 *   (torchvision's num_batches_tracked is not kept: it only matters for momentum = None.)
 * running_mean/running_var live in the ParamSet (decay 0) so they save and load with the weights, but they
 * are never trainable: cnn_build marks them frozen, keep them frozen, and never hand them to an optimizer.
 * The train-mode forward updates them in place.
 *
 * Adapter targets (core/adapter.h): every conv is a conv slot named as its torchvision module (conv1,
 * layer1.0.conv1, layer1.0.conv2, layer2.0.downsample.0; VGG features.0, features.3, ...), and the
 * classifier (fc / classifier) a linear slot. An adapted conv convolves with W0 + the adapters' dW,
 * materialized each forward in the arena (methods: reshape-LoRA = plain LoRA on a conv target, LAVA-conv). */
#ifndef CORE_CNN_H
#define CORE_CNN_H
#include <stdint.h>

#include "core/adapter.h"
#include "core/arena.h"
#include "core/common.h"
#include "core/params.h"

typedef enum { CNN_RESNET, CNN_VGG } CnnKind;

typedef struct {
    CnnKind kind;
    int in_ch, img_h, img_w, n_classes;
    int width;            /* channels of stage 1 */
    int stages;           /* each stage doubles channels and halves H, W (stride-2 conv / maxpool) */
    int blocks_per_stage; /* ResNet BasicBlocks, or VGG conv layers, per stage */
    int batchnorm;        /* 1 = conv-bn-relu, 0 = conv(bias)-relu */
} CnnConfig;

struct CnnOp;  /* one layer of the table (core/cnn.c) */
struct CnnAct; /* one activation slot: its per-sample shape */

typedef struct {
    CnnConfig cfg;
    ParamSet params;
    struct CnnOp *ops;
    int n_ops;
    struct CnnAct *acts; /* slot 0 is the input image, the last slot the logits */
    int n_acts;
    LinearSlot *slots;   /* one per conv (is_conv) and one for the classifier, in layer order */
    int n_slots;
    AdapterTarget *targets; /* the slots by module name (conv1, layer1.0.conv1, ..., fc), one per slot */
    int n_targets;
    /* State of the last forward, read by backward. Buffers live in the caller's arena. */
    float **act;         /* (n_acts) activations, B samples each */
    float **dact;        /* (n_acts) their gradients during backward */
    float *col_scratch;  /* shared by every conv2d (core/cpu/conv2d.h) */
    size_t col_scratch_floats;
    int B, train;
    /* (n_acts) all NULL in normal training. inject_act[i] != NULL (B * C*H*W of slot i, the caller's): added to
     * the gradient of activation i in the next cnn_backward, before the layer that produced it runs backward
     * (ABM's boundary-loss gradient at a pre-ReLU value, methods/abm.h). */
    const float **inject_act;
} CnnModel;

/* Registers every parameter, finalizes the ParamSet (data zeroed: call cnn_init_params or load weights),
 * marks running statistics frozen and allocates gradients for the rest (all trainable). Change what trains
 * with params_set_trainable() and call params_alloc_grads() again. Returns -1 with a message on a bad config. */
int cnn_build(CnnModel *m, const CnnConfig *cfg, Error *err);

/* torchvision's init: conv weights kaiming-normal (fan_out, relu gain: std = sqrt(2 / (C_out kh kw))), conv
 * biases 0; bn weight 1, bias 0, running mean 0, running var 1; linear as PyTorch's default
 * (weight and bias uniform in +-1/sqrt(fan_in), i.e. kaiming-uniform with a = sqrt(5)). Every tensor draws
 * from its own stream rng_stream(<parameter name>, 0, 0), so adding a layer does not change the others. */
void cnn_init_params(CnnModel *m, uint64_t seed);

/* logits (B, n_classes) from x (B, in_ch, img_h, img_w). train: batchnorm uses batch statistics and updates
 * the running statistics; 0: frozen statistics (eval, or fine-tuning a frozen backbone). Activations come
 * from the arena and are kept (with x and logits, which must stay alive) for the next cnn_backward. */
void cnn_forward(CnnModel *m, float *logits, const float *x, int B, int train, Arena *a);

/* Pre-ReLU points (ABM's match points, methods/abm.h): the convs whose output reaches a ReLU directly or through
 * its batchnorm (conv -> relu, conv -> bn -> relu), in layer order (= depth order). ResNet: the stem conv1 and
 * every block's conv1 (a block's conv2 and downsample feed the residual add, whose sum, not a conv's output, is
 * what the block's last ReLU reads); VGG: every conv. cnn_n_pre_relu counts them; cnn_pre_relu_point gives
 * point j's conv (its index in m->slots) and the activation slot the ReLU reads (the batchnorm's output when
 * there is one, else the conv's), whose per-sample shape is cnn_act_shape. -1 for j out of range. */
int cnn_n_pre_relu(const CnnModel *m);
int cnn_pre_relu_point(const CnnModel *m, int j, int *slot, int *act);
void cnn_act_shape(const CnnModel *m, int act, int *C, int *H, int *W);

/* dlogits (B, n_classes). ACCUMULATES into m->params.grad, for trainable views only: a frozen weight skips its
 * weight-gradient GEMM, while input gradients still flow through it to trainable layers below. Uses the
 * activations of the last cnn_forward (same arena, not reset in between); no gradient for x. */
void cnn_backward(CnnModel *m, const float *dlogits, Arena *a);

void cnn_free(CnnModel *m);
#endif

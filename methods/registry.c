/* methods/registry.c: every initializer and adapter kind by name. Adding a method = its file + one line here
 * + its test. */
#include <string.h>

#include "init.h"
#include "init_data.h"
#include "dora.h"
#include "lava.h"
#include "lora.h"
#include "lora_xs.h"

extern const InitKind INIT_KAIMING, INIT_GAUSSIAN, INIT_ORTHOGONAL;
extern const InitKind INIT_LORA_GA, INIT_LORA_SB, INIT_EVA, INIT_CORDA, INIT_CNT_LORA, INIT_ABM;
extern const InitKind INIT_PISSA, INIT_OLORA, INIT_LORA_XS;

static const InitKind *const INITS[] = {
    &INIT_KAIMING,
    &INIT_GAUSSIAN,
    &INIT_ORTHOGONAL,
    &INIT_EVA,
    &INIT_CORDA,
    &INIT_LORA_GA,
    &INIT_LORA_SB,
    &INIT_CNT_LORA,
    &INIT_ABM,
    &INIT_PISSA,
    &INIT_OLORA,
    &INIT_LORA_XS,
};

static const AdapterKind *const ADAPTERS[] = {
    &ADAPTER_LORA,
    &ADAPTER_DORA,
    &ADAPTER_LORA_XS,
    &ADAPTER_LAVA,
    &ADAPTER_LAVA_CONV,
};

const InitKind *init_find(const char *name) {
    for (size_t i = 0; i < sizeof INITS / sizeof INITS[0]; i++)
        if (!strcmp(INITS[i]->name, name)) return INITS[i];
    return NULL;
}

const char *init_names(void) {
    static char buf[512];
    if (!buf[0])
        for (size_t i = 0; i < sizeof INITS / sizeof INITS[0]; i++) {
            size_t len = strlen(buf);
            snprintf(buf + len, sizeof buf - len, "%s%s", i ? ", " : "", INITS[i]->name);
        }
    return buf;
}

const AdapterKind *adapter_find(const char *name) {
    for (size_t i = 0; i < sizeof ADAPTERS / sizeof ADAPTERS[0]; i++)
        if (!strcmp(ADAPTERS[i]->name, name)) return ADAPTERS[i];
    return NULL;
}

int init_run(const char *name, InitContext *ctx, InitResult *res, Error *err) {
    const InitKind *k = init_find(name);
    memset(res, 0, sizeof *res);
    if (!k) return err_set(err, "method.init '%s' is not implemented yet (available: %s)", name, init_names());
    double t0 = now_seconds();
    /* the accelerator's model for the first data pass, made before the clock (methods/init_data.h) */
    if (ctx->accel && ctx->accel->prepare && k->passes) ctx->accel->prepare(ctx->accel_ctx, ctx, k->passes);
    res->prepare_s = now_seconds() - t0;
    t0 = now_seconds();
    int rc = k->run(ctx, res, err);
    res->wall_s = now_seconds() - t0;
    if (ctx->accel && ctx->accel->release) ctx->accel->release(ctx->accel_ctx);
    return rc;
}

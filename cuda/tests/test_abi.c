/* Compiles l2d.h as plain C (the ABI must stay C) and exercises the error contract: every function
 * given null pointers or bad values returns an error status with a message instead of crashing. */
#include <stdio.h>
#include <string.h>

#include "l2d.h"

static int failures = 0;

static void expect(int ok, const char* what) {
  if (!ok) {
    printf("FAILED: %s\n", what);
    ++failures;
  }
}

/* status must be an error and the thread's last-error message must say something. */
static void expect_error(l2d_status status, const char* what) {
  expect(status != L2D_OK && strlen(l2d_last_error()) > 0, what);
}

int main(void) {
  expect(l2d_abi_version() == L2D_ABI_VERSION, "abi version");
  expect(strlen(l2d_status_string(12345)) > 0, "status string of an unknown code");

  l2d_tmap* map = NULL;
  expect(l2d_tmap_create(&map) == L2D_OK, "tmap create");
  int64_t shape[2] = {2, 3};
  float data[6] = {1, 2, 3, 4, 5, 6};
  expect(l2d_tmap_set(map, "x", L2D_F32, 2, shape, data, sizeof data) == L2D_OK, "tmap set");
  expect_error(l2d_tmap_set(map, "y", L2D_F32, 2, shape, data, 5), "wrong byte count");
  expect_error(l2d_tmap_set(map, "y", 99, 2, shape, data, sizeof data), "unknown dtype");
  expect_error(l2d_tmap_set(map, "y", L2D_F32, 9, shape, data, sizeof data), "too many dims");
  int64_t negative[1] = {-4};
  expect_error(l2d_tmap_set(map, "y", L2D_F32, 1, negative, data, 16), "negative dim");
  int64_t huge[2] = {(int64_t)1 << 62, (int64_t)1 << 62};
  expect_error(l2d_tmap_set(map, "y", L2D_F32, 2, huge, data, 16), "overflowing shape");
  expect_error(l2d_tmap_set(NULL, "y", L2D_F32, 2, shape, data, sizeof data), "null map");
  expect_error(l2d_tmap_set(map, NULL, L2D_F32, 2, shape, data, sizeof data), "null name");
  expect_error(l2d_tmap_set(map, "y", L2D_F32, 2, shape, NULL, sizeof data), "null data");
  expect_error(l2d_tmap_set_philox(map, "p", 2, shape, 7, 1, 0, 0), "unknown philox kind");
  int32_t dtype = 0, ndim = 0, count = 0;
  int64_t out_shape[L2D_MAX_DIMS];
  expect_error(l2d_tmap_info(map, "missing", &dtype, &ndim, out_shape), "info of a missing tensor");
  expect_error(l2d_tmap_info(map, "x", NULL, &ndim, out_shape), "info with null out");
  float small[2];
  expect_error(l2d_tmap_get(map, "x", small, sizeof small), "get into a small buffer");
  expect_error(l2d_tmap_count(NULL, &count), "count of null");
  char name[2];
  expect_error(l2d_tmap_name(map, 0, name, 1), "name into a small buffer");
  expect(l2d_tmap_name(map, 0, name, sizeof name) == L2D_OK && strcmp(name, "x") == 0, "name");
  expect_error(l2d_tmap_name(map, 5, name, sizeof name), "name index out of range");

  l2d_context* ctx = NULL;
  expect_error(l2d_context_create("tpu", NULL, &ctx), "unknown backend");
  expect_error(l2d_context_create("cpu", "{not json", &ctx), "bad options json");
  expect_error(l2d_context_create("cpu", "{\"threads\": 0}", &ctx), "zero threads");
  expect(l2d_context_create("cpu", "{\"threads\": 1}", &ctx) == L2D_OK, "cpu context");
  const char* stats = NULL;
  expect(l2d_context_stats(ctx, &stats) == L2D_OK && strstr(stats, "cpu") != NULL, "stats");

  l2d_model* model = NULL;
  expect_error(l2d_model_create(ctx, "no-such-kind", NULL, map, &model), "unknown model kind");
  expect(strlen(l2d_context_last_error(ctx)) > 0, "per-handle error of the context");
  expect_error(l2d_model_create(ctx, "unet", "{}", map, &model), "unet without config");
  expect_error(l2d_model_create(ctx, "taesd", "[1,2]", map, &model), "taesd with a non-object config");
  expect(l2d_model_create(ctx, "ops", NULL, NULL, &model) == L2D_OK, "ops model");
  expect_error(l2d_model_run(model, "no-such-method", map), "unknown method");
  expect(strlen(l2d_model_last_error(model)) > 0, "per-handle error of the model");
  expect_error(l2d_model_run(model, "linear", map), "missing inputs");
  l2d_session* session = NULL;
  expect_error(l2d_session_create(model, NULL, &session), "ops model has no sessions");
  expect_error(l2d_stream_create(model, model, model, NULL, &session), "stream over non-stream models");
  uint8_t frame[12], out[12];
  int32_t ready = 0;
  expect_error(l2d_stream_push(NULL, frame, sizeof frame, 2, 2, 3, out, sizeof out, &ready), "push to null");
  expect_error(l2d_session_run(NULL, "push", map), "run on a null session");

  /* Freeing the context first is fine: the model keeps its backend alive. */
  expect(l2d_context_free(ctx) == L2D_OK, "context free");
  expect(l2d_model_run(model, "identity", map) == L2D_OK, "the model still runs after its context handle is freed");
  expect(l2d_model_free(model) == L2D_OK, "model free");
  expect(l2d_model_free(NULL) == L2D_OK && l2d_session_free(NULL) == L2D_OK && l2d_tmap_free(NULL) == L2D_OK &&
             l2d_context_free(NULL) == L2D_OK,
         "free(NULL) is a no-op");
  expect(l2d_tmap_free(map) == L2D_OK, "tmap free");

  if (failures) return 1;
  printf("test_abi_c: ok\n");
  return 0;
}

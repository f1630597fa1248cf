/* Compiles l2d.h as plain C (the ABI must stay C) and exercises the status/error contract. */
#include <stdio.h>
#include <string.h>

#include "l2d.h"

int main(void) {
  if (l2d_abi_version() != L2D_ABI_VERSION) return 1;
  l2d_tmap* map = NULL;
  if (l2d_tmap_create(&map) != L2D_OK) return 2;
  int64_t shape[2] = {2, 3};
  float data[6] = {1, 2, 3, 4, 5, 6};
  if (l2d_tmap_set(map, "x", L2D_F32, 2, shape, data, sizeof data) != L2D_OK) return 3;
  /* Wrong byte count -> an error status and a message, not a crash. */
  if (l2d_tmap_set(map, "y", L2D_F32, 2, shape, data, 5) != L2D_ERR_INVALID_ARGUMENT) return 4;
  if (strlen(l2d_last_error()) == 0) return 5;
  if (l2d_tmap_free(map) != L2D_OK) return 6;
  printf("test_abi_c: ok\n");
  return 0;
}

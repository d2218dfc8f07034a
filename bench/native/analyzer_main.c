/*
 * The C analyzer (swarms/analyzer-c/src/analyzer.c) as a native program,
 * for the bench's figure (d): the same source the analyzer-c component is
 * built from, compiled by the same clang (zig 0.17.1) at -O2 for this
 * machine.
 *
 *     analyzer-c-native TASK_TYPE PAYLOAD_FILE ITERATIONS
 *
 * Runs the task ITERATIONS times on the payload (read once, before the
 * clock starts), then prints the milliseconds per run on the first line and
 * the last run's output on the second.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analyzer.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s TASK_TYPE PAYLOAD_FILE ITERATIONS\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *payload = malloc((size_t)size + 1);
    if (!payload || fread(payload, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "reading %s failed\n", argv[2]);
        return 1;
    }
    fclose(f);
    long iterations = atol(argv[3]);
    if (iterations < 1) iterations = 1;
    char *out = NULL;
    size_t out_len = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < iterations; i++) {
        free(out);
        analyzer_execute(argv[1], strlen(argv[1]), payload, (size_t)size, &out, &out_len);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = ((double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6) /
                (double)iterations;
    printf("%.6f\n%.*s\n", ms, (int)out_len, out);
    free(out);
    free(payload);
    return 0;
}

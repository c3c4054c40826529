/* A WASI tool that misbehaves on request, to test the sandbox's limits
 * (tests/kernel/capabilities/test_wasi_tools.py). The JSON on stdin names what to do:
 *   {"do": "loop"}               spin forever (fuel, or the wall clock, must stop it)
 *   {"do": "sleep"}              wait on the clock without working (only the wall clock stops it)
 *   {"do": "alloc"}              allocate 1 MiB blocks until malloc fails; print the MiB got
 *   {"do": "read", "path": P}    print the first line of file P, or the error opening it
 *   {"do": "write", "path": P}   create file P
 *   {"do": "env"}                print the environment variable SECRET
 *   {"do": "exit"}               complain on stderr and exit with code 3
 *   {"do": "garbage"}            print something that is not JSON
 *   {"do": "flood"}              print 2 MiB
 *   {"do": "trap"}               execute an unreachable instruction
 * Build: clang --target=wasm32-wasi -O2 -s misbehave.c -o misbehave.wasm
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char input[65536];

static const char *arg(const char *key) {
    static char value[4096];
    char *at = strstr(input, key);
    if (!at) return "";
    at = strchr(at + strlen(key), '"');
    if (!at) return "";
    size_t n = 0;
    for (at++; *at && *at != '"' && n < sizeof value - 1; at++) value[n++] = *at;
    value[n] = '\0';
    return value;
}

int main(void) {
    input[fread(input, 1, sizeof input - 1, stdin)] = '\0';
    char what[64];
    snprintf(what, sizeof what, "%s", arg("\"do\":"));
    if (!strcmp(what, "loop")) {
        volatile unsigned long n = 0;
        for (;;) n++;
    } else if (!strcmp(what, "sleep")) {
        struct timespec t = {3600, 0};
        int slept = nanosleep(&t, NULL) == 0;
        printf("{\"slept\": %s}\n", slept ? "true" : "false");
    } else if (!strcmp(what, "alloc")) {
        long mib = 0;
        char *volatile block;
        while ((block = malloc(1 << 20)) != NULL) {
            block[0] = 1; /* used: the allocation cannot be optimised away */
            mib++;
        }
        printf("{\"mib\": %ld}\n", mib);
    } else if (!strcmp(what, "read")) {
        FILE *f = fopen(arg("\"path\":"), "r");
        if (!f) {
            printf("{\"error\": \"%s\"}\n", strerror(errno));
            return 0;
        }
        char line[256] = "";
        fgets(line, sizeof line, f);
        line[strcspn(line, "\r\n\"\\")] = '\0';
        printf("{\"line\": \"%s\"}\n", line);
    } else if (!strcmp(what, "write")) {
        FILE *f = fopen(arg("\"path\":"), "w");
        if (!f) {
            printf("{\"error\": \"%s\"}\n", strerror(errno));
            return 0;
        }
        fputs("written from the sandbox\n", f);
        fclose(f);
        printf("{\"written\": true}\n");
    } else if (!strcmp(what, "env")) {
        const char *secret = getenv("SECRET");
        printf("{\"secret\": %s%s%s}\n", secret ? "\"" : "", secret ? secret : "null",
               secret ? "\"" : "");
    } else if (!strcmp(what, "exit")) {
        fputs("something went wrong in here\n", stderr);
        return 3;
    } else if (!strcmp(what, "garbage")) {
        puts("this is not JSON");
    } else if (!strcmp(what, "flood")) {
        printf("\"");
        for (int i = 0; i < 2 * 1024 * 1024; i++) putchar('x');
        printf("\"\n");
    } else if (!strcmp(what, "trap")) {
        __builtin_trap();
    } else {
        printf("{\"unknown\": \"%s\"}\n", what);
    }
    return 0;
}

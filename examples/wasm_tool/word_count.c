/* A Loom tool compiled to WebAssembly (WASI): counts the words and lines of a text.
 *
 * Loom runs it sandboxed ([tools.word_count] sandbox = "wasi" in loom.toml): the call's
 * arguments arrive as JSON on stdin, {"text": "..."}; the result leaves as JSON on stdout,
 * {"words": N, "lines": N, "chars": N}. It sees no file, network or environment.
 *
 * Build (Debian: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32):
 *   clang --target=wasm32-wasi -O2 -s word_count.c -o word_count.wasm
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Find "text": "<value>" in the JSON object on stdin and walk its characters, decoding
 * the JSON escapes that matter for counting (\n, \t, \", \\, \uXXXX as one char). */
int main(void) {
    static char input[1 << 20];
    size_t size = fread(input, 1, sizeof input - 1, stdin);
    input[size] = '\0';
    char *key = strstr(input, "\"text\"");
    if (key == NULL) {
        fputs("expected {\"text\": \"...\"} on stdin\n", stderr);
        return 2;
    }
    char *p = strchr(key + 6, '"');
    if (p == NULL) {
        fputs("\"text\" has no string value\n", stderr);
        return 2;
    }
    long words = 0, lines = 0, chars = 0;
    int in_word = 0;
    char last = 0;
    for (p++; *p && *p != '"'; p++) {
        char c = *p;
        if (c == '\\' && p[1]) {
            p++;
            c = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p == 'r' ? '\r' : *p;
            if (*p == 'u') {
                p += 4; /* one character, not a space */
                c = 'u';
            }
        } else if ((unsigned char)c >= 0x80 && ((unsigned char)c & 0xC0) == 0x80) {
            continue; /* a UTF-8 continuation byte: part of the previous character */
        }
        chars++;
        last = c;
        if (c == '\n') lines++;
        if (isspace((unsigned char)c)) {
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            words++;
        }
    }
    if (chars > 0 && last != '\n') lines++; /* a last line without its newline */
    printf("{\"words\": %ld, \"lines\": %ld, \"chars\": %ld}\n", words, lines, chars);
    return 0;
}

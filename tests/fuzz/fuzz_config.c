// libFuzzer harness for the config loader (config/config.h): the INI file and the
// HOOKD_<SECTION>_<KEY> environment overrides. The input is INI text, optionally
// followed by a line "%%env" and then one NAME=value environment entry per line.
// The INI goes through a memfd (the loader reads a path). A config that loads must
// dump (secrets redacted) without failing and must be "reload-equal" to itself.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config/config.h"
#include "base/log.h"

#define ENV_MAX 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        hk_log_set_level(HK_LOG_ERROR);
        quiet = 1;
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    size_t ini_len = size;
    char *envp[ENV_MAX + 1];
    size_t envc = 0;
    char *sep = (char *)memmem(text, size, "%%env\n", 6);
    if (sep) {
        ini_len = (size_t)(sep - text);
        char *save = NULL;
        for (char *line = strtok_r(sep + 6, "\n", &save); line && envc < ENV_MAX;
             line = strtok_r(NULL, "\n", &save))
            envp[envc++] = line;
    }
    envp[envc] = NULL;

    int fd = memfd_create("fuzz.conf", 0);
    if (fd < 0) {
        free(text);
        return 0;
    }
    if (ini_len && write(fd, data, ini_len) != (ssize_t)ini_len) {
        close(fd);
        free(text);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    char err[512];
    hk_config_t *cfg = hk_config_load(path, envp, err, sizeof err);
    if (cfg) {
        char *dump = NULL;
        size_t dump_len = 0;
        FILE *out = open_memstream(&dump, &dump_len);
        if (out) {
            hk_config_dump(cfg, out);
            fclose(out);
        }
        free(dump);
        if (hk_config_reloadable_diff(cfg, cfg, err, sizeof err) != 0)
            abort();
        hk_config_destroy(cfg);
    } else if (!memchr(err, '\0', sizeof err) || !err[0]) {
        abort();
    }
    close(fd);
    free(text);
    return 0;
}

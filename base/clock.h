// clock: the two clocks hookd uses, in milliseconds.
//   hk_clock_mono_ms(): CLOCK_MONOTONIC, for timeouts, delays, breaker windows:
//                       never jumps, meaningless across processes.
//   hk_clock_wall_ms(): CLOCK_REALTIME (ms since the epoch), for what crosses a
//                       process boundary: hookd-due-at, webhook-timestamp, expires_at.
//   hk_clock_sleep_ms(): sleeps at least `ms`, resuming after signals.
// Policy code (retry/) takes the time as an argument instead of calling these.
#ifndef HK_CLOCK_H
#define HK_CLOCK_H

#include <stdint.h>

int64_t hk_clock_mono_ms(void);
int64_t hk_clock_wall_ms(void);
void hk_clock_sleep_ms(int ms);

#endif

/* A stand-in "iocpsrv 2.0.0" for echo_driver.py: it exports only the version
 * functions, which is all a sample may call before it has checked them. Each
 * sample must refuse it with a message and exit code 1, never crash. */
#include <stdint.h>

#if defined(_WIN32)
#  define FAKE_API __declspec(dllexport)
#  define FAKE_CALL __cdecl
#else
#  define FAKE_API __attribute__((visibility("default")))
#  define FAKE_CALL
#endif

FAKE_API uint32_t FAKE_CALL iocp_version(void) { return 0x020000u; }
FAKE_API const char *FAKE_CALL iocp_version_string(void) { return "2.0.0"; }

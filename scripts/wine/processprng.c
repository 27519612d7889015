/* Stand-in for bcryptprimitives.dll, which Wine 8 lacks but Rust >= 1.78's std
 * imports ProcessPrng from. Installed into the test prefix only. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    return BCryptGenRandom(NULL, data, (ULONG)len, BCRYPT_USE_SYSTEM_PREFERRED_RNG) == 0;
}

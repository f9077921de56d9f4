/* ok — the exec-runtime benchmark's program: writes "ok" to stdout and exits.
 * mxu's exec runtime sends the program's stdout as the response body (no CGI
 * header), so this is the mxu twin of bench/src/cgi-ok.c, which prints the
 * minimal CGI header before the same body. bench/run.sh builds it static. */
#include <unistd.h>

int main(void)
{
    return write(1, "ok", 2) == 2 ? 0 : 1;
}

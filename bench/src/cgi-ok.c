/* cgi-ok — the CGI program behind nginx + fcgiwrap in bench/run.sh: the
 * minimal CGI header (Status, Content-Type, Content-Length), a blank line and
 * the body "ok". Built static, like bench/functions/exec-ok/ok.c. */
#include <unistd.h>

int main(void)
{
    static const char out[] = "Status: 200 OK\r\n"
                              "Content-Type: text/plain\r\n"
                              "Content-Length: 2\r\n"
                              "\r\n"
                              "ok";
    return write(1, out, sizeof(out) - 1) == (ssize_t)(sizeof(out) - 1) ? 0 : 1;
}

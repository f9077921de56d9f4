/* true — exits 0 at once. Built static; hyperfine times its fork+exec to give
 * the cold-start figures a scale (the cheapest process start there is). */
int main(void)
{
    return 0;
}

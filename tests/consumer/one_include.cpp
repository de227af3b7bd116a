// The one-line program whose compile time the public headers are kept cheap for
// (tests/consumer/check_headers.cmake).
#include "tapegrad.hpp"
int main() {}

//===- ElfCheck.h - a shared library whose headers tell the truth -*- C++ -*-===//
//
// dlopen maps a library's segments as its program headers describe them: a
// truncated or corrupted file maps pages past its end and the first touch is
// a SIGBUS inside the loader. Hosts check the headers against the file's
// size first, so such a file is an error message. Standard C++ only.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_SUPPORT_ELFCHECK_H
#define MOE_SUPPORT_ELFCHECK_H

#include <cstdint>
#include <string>
#include <string_view>

namespace support {

/// Checks the ELF header and program headers in `head` (the file's first
/// bytes; the program headers must lie within them) against `fileSize`:
/// a 64-bit little-endian shared object of this machine whose loadable
/// segments and section headers lie inside the file. False with `error`
/// set otherwise.
bool checkElfHeaders(std::string_view head, uint64_t fileSize, std::string &error);

/// Reads the start of `path` and checks it as above.
bool checkElfFile(const std::string &path, std::string &error);

} // namespace support

#endif // MOE_SUPPORT_ELFCHECK_H

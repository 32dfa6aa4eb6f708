namespace GuideCopy.Interop;

internal static partial class Interop
{
    internal static partial class Libraries
    {
        internal const string Libc = "libc";
    }
}

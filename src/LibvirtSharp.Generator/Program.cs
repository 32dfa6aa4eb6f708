using LibvirtSharp.Generator;

// Regenerates src/LibvirtSharp/Generated from libvirt's API XML:
//   dotnet run --project src/LibvirtSharp.Generator -- --out src/LibvirtSharp/Generated [--api X] [--qemu-api Y]
string? outDir = null, api = null, qemuApi = null;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--out" when i + 1 < args.Length: outDir = args[++i]; break;
        case "--api" when i + 1 < args.Length: api = args[++i]; break;
        case "--qemu-api" when i + 1 < args.Length: qemuApi = args[++i]; break;
        default:
            Console.Error.WriteLine($"unknown argument '{args[i]}'\nusage: --out DIR [--api libvirt-api.xml] [--qemu-api libvirt-qemu-api.xml]");
            return 2;
    }
}
if (outDir is null)
{
    Console.Error.WriteLine("usage: --out DIR [--api libvirt-api.xml] [--qemu-api libvirt-qemu-api.xml]");
    return 2;
}

api ??= ApiLocator.PkgConfig("libvirt_api", "libvirt");
qemuApi ??= ApiLocator.PkgConfig("libvirt_qemu_api", "libvirt-qemu");
var result = new BindingGenerator(ApiModel.Load(api, qemuApi)).Generate();
OutputWriter.Write(result, outDir);
Console.WriteLine($"read {api} and {qemuApi}");
Console.WriteLine($"functions in XML: {result.FunctionsInXml}, generated: {result.Generated}, hand-bound: {result.HandBound}, skipped: {result.Skipped}");
Console.WriteLine($"wrote {result.Files.Count} files to {Path.GetFullPath(outDir)}");
return 0;

namespace LibvirtSharp.Generator;

/// <summary>Writes the generated set and removes any stale generated file, so the folder equals the output.</summary>
public static class OutputWriter
{
    public static void Write(GenerationResult result, string outDir)
    {
        Directory.CreateDirectory(outDir);
        foreach (string stale in Directory.EnumerateFiles(outDir).Where(f => f.EndsWith(".g.cs", StringComparison.Ordinal) || f.EndsWith(".md", StringComparison.Ordinal)))
            if (!result.Files.ContainsKey(Path.GetFileName(stale))) File.Delete(stale);
        foreach (var (name, text) in result.Files)
            File.WriteAllText(Path.Combine(outDir, name), text);
    }
}
